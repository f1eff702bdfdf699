#include "util/files.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace twofactor::files {

namespace {
std::runtime_error sysError(const std::string& what, const std::string& path) {
    return std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

void writeAll(int fd, std::string_view data, const std::string& path) {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw sysError("cannot write", path);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

void syncDirectory(const std::string& dir) {
    Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.fd >= 0) ::fsync(d.fd);
}
}  // namespace

std::string dirName(const std::string& path) {
    const auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

void ensureDirectory(const std::string& path, unsigned mode) {
    if (path.empty()) throw std::runtime_error("empty directory path");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) throw std::runtime_error(path + " exists and is not a directory");
        return;
    }
    const std::string parent = dirName(path);
    if (parent != path && parent != "/" && parent != ".") ensureDirectory(parent, mode);
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw sysError("cannot create directory", path);
}

namespace {
SecretString readSecret(const std::string& path, bool strict) {
    Fd f(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (f.fd < 0) {
        if (errno == ELOOP)
            throw std::runtime_error(path + " is a symbolic link; point the configuration at the file itself");
        throw sysError("cannot open", path);
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) throw sysError("cannot stat", path);
    if (!S_ISREG(st.st_mode)) throw std::runtime_error(path + " is not a regular file");
    if (strict && st.st_uid != ::geteuid())
        throw std::runtime_error(path + " is owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                                 std::to_string(::geteuid()) + " that runs twofactord; fix with: chown " +
                                 std::to_string(::geteuid()) + " " + path);
    if (strict && (st.st_mode & 077) != 0)
        throw std::runtime_error(path + " is accessible by group or others; fix with: chmod 600 " + path);
    if (st.st_size > 4096) throw std::runtime_error(path + " is too large to be a key file");
    std::string content(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < content.size()) {
        const ssize_t n = ::read(f.fd, content.data() + got, content.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            SecretString wipe(std::move(content));
            throw sysError("cannot read", path);
        }
        got += static_cast<std::size_t>(n);
    }
    return SecretString(std::move(content));
}
}  // namespace

SecretString readSecretFile(const std::string& path) { return readSecret(path, true); }
SecretString readCredentialFile(const std::string& path) { return readSecret(path, false); }

void checkPrivateDirectory(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) throw sysError("cannot stat", path);
    if (!S_ISDIR(st.st_mode)) throw std::runtime_error(path + " is not a directory");
    if (st.st_uid != ::geteuid() && st.st_uid != 0)
        throw std::runtime_error(path + " is owned by uid " + std::to_string(st.st_uid) +
                                 ", not by this user; remove it or choose another socket path");
    if ((st.st_mode & 022) != 0 && !(st.st_mode & S_ISVTX))
        throw std::runtime_error(path + " is writable by group or others; fix with: chmod 755 " + path);
}

void writeFileAtomic(const std::string& tmpDir, const std::string& dir, const std::string& name,
                     std::string_view content, bool exclusive) {
    std::string tmpl = tmpDir + "/." + name + ".XXXXXX";
    Fd f(::mkostemp(tmpl.data(), O_CLOEXEC));
    if (f.fd < 0) throw sysError("cannot create a file in", tmpDir);
    try {
        if (::fchmod(f.fd, 0600) != 0) throw sysError("cannot chmod", tmpl);
        writeAll(f.fd, content, tmpl);
        if (::fsync(f.fd) != 0) throw sysError("cannot fsync", tmpl);
        const std::string target = dir + "/" + name;
        if (exclusive) {
            if (::link(tmpl.c_str(), target.c_str()) != 0) throw sysError("cannot create", target);
            ::unlink(tmpl.c_str());
        } else if (::rename(tmpl.c_str(), target.c_str()) != 0) {
            throw sysError("cannot rename into", target);
        }
    } catch (...) {
        ::unlink(tmpl.c_str());
        throw;
    }
    syncDirectory(dir);
}

}  // namespace twofactor::files
