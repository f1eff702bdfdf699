// The unit tests' shared main, and a reporter printing one TAP line per test
// case (Catch2's own TAP reporter prints one per assertion), so the suite's
// summary counts test cases.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

namespace {

class TapCaseReporter : public Catch::StreamingReporterBase<TapCaseReporter> {
public:
    using StreamingReporterBase::StreamingReporterBase;

    static std::string getDescription() { return "TAP, one line per test case"; }

    void assertionStarting(Catch::AssertionInfo const&) override {}

    bool assertionEnded(Catch::AssertionStats const& stats) override {
        const auto& result = stats.assertionResult;
        if (!result.isOk()) {
            stream << "# " << result.getSourceInfo() << ": ";
            if (result.hasExpression()) stream << result.getExpressionInMacro() << " with expansion "
                                               << result.getExpandedExpression();
            if (result.hasMessage()) stream << " " << result.getMessage();
            for (const auto& info : stats.infoMessages) stream << " [" << info.message << "]";
            stream << "\n";
        }
        return true;
    }

    void testCaseEnded(Catch::TestCaseStats const& stats) override {
        ++count_;
        const bool ok = stats.totals.assertions.failed == 0 || stats.testInfo.okToFail();
        stream << (ok ? "ok " : "not ok ") << count_ << " - " << stats.testInfo.name << "\n";
        StreamingReporterBase::testCaseEnded(stats);
    }

    void testRunEnded(Catch::TestRunStats const& stats) override {
        stream << "1.." << count_ << "\n";
        StreamingReporterBase::testRunEnded(stats);
    }

private:
    int count_ = 0;
};

}  // namespace

CATCH_REGISTER_REPORTER("tap-cases", TapCaseReporter)
