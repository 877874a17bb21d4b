// Buffered sequential access on top of File, so that formats made of many small pieces (pack headers,
// records) cost one system call per few MiB instead of one per piece.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/file.hpp"

namespace walb {

class BufferedReader {
public:
    BufferedReader(const File& file, uint64_t offset, size_t bufferSize = 4u << 20);
    // Reads up to `len` bytes; fewer only at end of file.
    size_t read(void* out, size_t len);
    // Reads exactly `len` bytes or throws TRUNCATED naming what was being read.
    void readExact(void* out, size_t len, const char* what);
    void skip(uint64_t len);
    uint64_t offset() const { return offset_; }
    bool atEof();

private:
    bool fill();
    const File& file_;
    uint64_t offset_;      // file offset of the next byte returned
    uint64_t fileOffset_;  // file offset of buf_[end_]
    std::vector<char> buf_;
    size_t pos_ = 0, end_ = 0;
};

class BufferedWriter {
public:
    BufferedWriter(File& file, uint64_t offset, size_t bufferSize = 4u << 20);
    ~BufferedWriter() = default;  // callers flush explicitly: a destructor must not throw
    void write(const void* data, size_t len);
    void flush();
    uint64_t offset() const { return offset_ + pending_.size(); }

private:
    File& file_;
    uint64_t offset_;
    size_t limit_;
    std::vector<char> pending_;
};

}  // namespace walb
