// twofactor key rotate, twofactor backup (admin).
#include "cli/common.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace twofactor::cli {

namespace {

// SHA-256 (FIPS 180-4), to check the backup as written against the daemon's
// digest. Here because the CLI links no crypto library.
class Sha256 {
public:
    void update(const unsigned char* data, std::size_t size) {
        length_ += size;
        while (size > 0) {
            const std::size_t n = std::min(size, block_.size() - used_);
            std::memcpy(block_.data() + used_, data, n);
            used_ += n;
            data += n;
            size -= n;
            if (used_ == block_.size()) {
                compress();
                used_ = 0;
            }
        }
    }

    std::string hexDigest() {
        const std::uint64_t bits = length_ * 8;
        const unsigned char pad = 0x80;
        update(&pad, 1);
        const unsigned char zero = 0;
        while (used_ != 56) update(&zero, 1);
        unsigned char lengthBytes[8];
        for (int i = 0; i < 8; ++i) lengthBytes[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
        update(lengthBytes, 8);
        static const char* const digits = "0123456789abcdef";
        std::string out;
        for (std::uint32_t word : h_)
            for (int shift = 28; shift >= 0; shift -= 4) out += digits[(word >> shift) & 0xf];
        return out;
    }

private:
    static std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

    void compress() {
        static constexpr std::uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
        std::uint32_t w[64];
        for (int i = 0; i < 16; ++i)
            w[i] = std::uint32_t{block_[4 * i]} << 24 | std::uint32_t{block_[4 * i + 1]} << 16 |
                   std::uint32_t{block_[4 * i + 2]} << 8 | std::uint32_t{block_[4 * i + 3]};
        for (int i = 16; i < 64; ++i) {
            const std::uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const std::uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        auto [a, b, c, d, e, f, g, h] = h_;
        for (int i = 0; i < 64; ++i) {
            const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        const std::uint32_t add[8] = {a, b, c, d, e, f, g, h};
        for (int i = 0; i < 8; ++i) h_[i] += add[i];
    }

    std::array<std::uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<unsigned char, 64> block_{};
    std::size_t used_ = 0;
    std::uint64_t length_ = 0;
};

// Standard base64 with padding; false on anything else.
bool decodeBase64(const std::string& text, std::vector<unsigned char>& out) {
    if (text.size() % 4 != 0) return false;
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    out.clear();
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
        int v[4];
        for (int j = 0; j < 4 - pad; ++j)
            if ((v[j] = value(text[i + j])) < 0) return false;
        for (int j = 4 - pad; j < 4; ++j) v[j] = 0;
        const std::uint32_t bits =
            std::uint32_t(v[0]) << 18 | std::uint32_t(v[1]) << 12 | std::uint32_t(v[2]) << 6 | std::uint32_t(v[3]);
        out.push_back(static_cast<unsigned char>(bits >> 16));
        if (pad < 2) out.push_back(static_cast<unsigned char>(bits >> 8));
        if (pad < 1) out.push_back(static_cast<unsigned char>(bits));
    }
    return true;
}

std::string mebibytes(std::int64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

class MaintenanceCommands final : public CommandGroup {
public:
    void add(CLI::App& app, const Selection& pick) override {
        if (pick.wants("key")) {
            key_ = app.add_subcommand("key", "the database key (admin)");
            key_->require_subcommand(1);
            rotate_ = key_->add_subcommand(
                "rotate", "rekey the database to a fresh random key and verify it; the old key stops working");
        }
        if (pick.wants("backup")) {
            backup_ = app.add_subcommand("backup", "write an encrypted, verified copy of the database to FILE (admin)");
            backup_->add_option("-o,--output", output_, "the file to write, mode 0600; it must not exist")->required();
            backup_->add_flag("--force", force_, "replace FILE if it exists");
        }
    }

    int run(const Globals& g) override {
        if (rotate_ != nullptr && *rotate_) return rotate(g);
        if (backup_ != nullptr && *backup_) return backup(g);
        return -1;
    }

private:
    static int rotate(const Globals& g) {
        json out;
        if (int rc = call(g, "key rotate", "io.twofactor.Maintenance.RotateKey", json::object(), out); rc >= 0)
            return rc;
        if (g.json)
            std::printf("%s\n", out.dump().c_str());
        else
            std::printf("rotated: %s holds the new key; the old key no longer opens the database\n",
                        str(out, "keyFile").c_str());
        return kOk;
    }

    int backup(const Globals& g) {
        auto fail = [](const std::string& message, int code) {
            std::fprintf(stderr, "twofactor backup: %s\n", message.c_str());
            return code;
        };
        // Refused before the daemon does any work, by looking only; link()
        // settles a race at the end.
        struct stat st {};
        if (::lstat(output_.c_str(), &st) == 0) {
            if (S_ISDIR(st.st_mode)) return fail(output_ + " is a directory; name the file to write", kUsage);
            if (!force_) return fail(output_ + " exists; --force replaces it", kUsage);
        }
        std::string error;
        if (!PrivateFile::checkTarget(output_, error)) return fail(error, kUsage);
        // The file is created once twofactord has accepted the call: a user
        // it refuses (no admin role) leaves nothing behind, not even briefly.
        PrivateFile file;
        bool created = false;

        ProgressLine line("backup");
        Sha256 sha;
        std::int64_t received = 0;
        std::string problem;  // the first thing that went wrong while receiving
        std::vector<unsigned char> chunk;
        json out;
        const int rc = callMore(
            g, "backup", "io.twofactor.Maintenance.Backup", json::object(),
            [&](const json& p) {
                if (!created) {
                    created = true;
                    if (!file.create(output_, problem)) return;
                }
                const std::string phase = str(p, "phase");
                if (phase == "copy") {
                    const auto done = p.value("pagesDone", std::int64_t{0});
                    const auto total = p.value("pagesTotal", std::int64_t{0});
                    line.show(std::to_string(total > 0 ? done * 100 / total : 100) + "% (" + std::to_string(done) +
                              "/" + std::to_string(total) + " pages)");
                    return;
                }
                if (phase != "data" || !problem.empty()) return;
                if (!decodeBase64(str(p, "data"), chunk)) {
                    problem = "twofactord sent a chunk that is not base64";
                    return;
                }
                if (!file.write(chunk)) {
                    problem = "cannot write " + output_ + ": " + file.writeError();
                    return;
                }
                sha.update(chunk.data(), chunk.size());
                received += static_cast<std::int64_t>(chunk.size());
                line.show("receiving " + mebibytes(received) + " of " + mebibytes(p.value("size", std::int64_t{0})));
            },
            out);
        line.finish();
        if (rc >= 0) return rc;  // reported; the partial file goes with `file`
        if (!problem.empty()) return fail(problem + "; nothing was written", kUsage);
        const std::string digest = sha.hexDigest();
        if (received != out.value("size", std::int64_t{-1}) || digest != str(out, "sha256"))
            return fail("the copy received does not match what twofactord sent (" + std::to_string(received) +
                            " bytes); nothing was written",
                        kUnreachable);
        if (!file.commit(force_, error)) return fail(error, kUsage);
        if (g.json) {
            std::printf("%s\n", json{{"file", output_}, {"size", received}, {"sha256", digest}, {"pages", out["pages"]}}
                                    .dump()
                                    .c_str());
        } else {
            std::printf("%s: %lld bytes, sha256 %s\n", output_.c_str(), static_cast<long long>(received),
                        digest.c_str());
        }
        return kOk;
    }

    CLI::App* key_ = nullptr;
    CLI::App* rotate_ = nullptr;
    CLI::App* backup_ = nullptr;
    std::string output_;
    bool force_ = false;
};

}  // namespace

std::unique_ptr<CommandGroup> maintenanceCommands() { return std::make_unique<MaintenanceCommands>(); }

}  // namespace twofactor::cli
