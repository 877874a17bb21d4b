#include "support.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "core/bytes.hpp"

namespace walb::test {

TempDir::TempDir(const std::string& under) {
    const char* env = std::getenv("TMPDIR");
    const std::string base = !under.empty() ? under : env && *env ? env : "/tmp";
    std::string tmpl = base + "/walb-native-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

Bytes readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    return Bytes(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string& path, const Bytes& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(b.data(), static_cast<std::streamsize>(b.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
}

void makeFile(const std::string& path, uint64_t size) {
    std::ofstream(path, std::ios::binary | std::ios::trunc).close();
    std::filesystem::resize_file(path, size);
}

Bytes bytes(size_t len, uint64_t seed) {
    Bytes out(len);
    for (size_t i = 0; i < len; i += 8) {
        uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 1;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (size_t k = 0; k < 8 && i + k < len; k++) out[i + k] = static_cast<char>(z >> (8 * k));
    }
    return out;
}

void Completions::ioDone(uint64_t id, int error) {
    std::lock_guard<std::mutex> lk(mu_);
    done_[id] = error;
    cv_.notify_all();
}

int Completions::wait(uint64_t id, int timeoutMs) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!cv_.wait_for(lk, std::chrono::milliseconds(timeoutMs), [&] { return done_.count(id) > 0; }))
        throw std::runtime_error("request " + std::to_string(id) + " did not complete");
    return done_[id];
}

bool Completions::done(uint64_t id) {
    std::lock_guard<std::mutex> lk(mu_);
    return done_.count(id) > 0;
}

}  // namespace walb::test
