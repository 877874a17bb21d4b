// Helpers of the native tests (docs/testing.md): a temporary directory, files, reproducible bytes, and a
// completion target that lets a test wait for wdev requests.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/bytes.hpp"
#include "core/error.hpp"
#include "core/wdev.hpp"

namespace walb::test {

// A fresh directory under `under` (default: $TMPDIR, else /tmp), removed with everything in it.
class TempDir {
public:
    explicit TempDir(const std::string& under = "");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string path(const std::string& name) const { return dir_ + "/" + name; }

private:
    std::string dir_;
};

Bytes readFile(const std::string& path);
void writeFile(const std::string& path, const Bytes& bytes);
// A file of `size` zero bytes.
void makeFile(const std::string& path, uint64_t size);

// Reproducible pseudo-random bytes (splitmix64 of the seed and position).
Bytes bytes(size_t len, uint64_t seed);

// The code of the walb::Error that `fn` throws; fails the test when it throws nothing.
template <class F>
ErrorCode errorCodeOf(F&& fn, std::string* message = nullptr) {
    try {
        fn();
    } catch (const Error& e) {
        if (message) *message = e.what();
        return e.code();
    }
    throw std::logic_error("expected a walb::Error, nothing was thrown");
}

// Collects completions of wdev requests; wait() blocks until a request has completed.
class Completions : public IoCompletionTarget {
public:
    void ioDone(uint64_t id, int error) override;
    // The request's errno; fails (throws) after `timeoutMs`.
    int wait(uint64_t id, int timeoutMs = 20000);
    bool done(uint64_t id);

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<uint64_t, int> done_;
};

}  // namespace walb::test
