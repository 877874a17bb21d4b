#include "core/stream.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.hpp"

namespace walb {

BufferedReader::BufferedReader(const File& file, uint64_t offset, size_t bufferSize)
    : file_(file), offset_(offset), fileOffset_(offset), buf_(bufferSize) {}

bool BufferedReader::fill() {
    pos_ = 0;
    end_ = file_.preadSome(buf_.data(), buf_.size(), fileOffset_);
    fileOffset_ += end_;
    return end_ > 0;
}

size_t BufferedReader::read(void* out, size_t len) {
    auto* p = static_cast<char*>(out);
    size_t done = 0;
    while (done < len) {
        if (pos_ == end_) {
            // Large reads bypass the buffer.
            if (len - done >= buf_.size()) {
                size_t n = file_.preadSome(p + done, len - done, fileOffset_);
                fileOffset_ += n;
                done += n;
                break;
            }
            if (!fill()) break;
        }
        size_t n = std::min(len - done, end_ - pos_);
        std::memcpy(p + done, buf_.data() + pos_, n);
        pos_ += n;
        done += n;
    }
    offset_ += done;
    return done;
}

void BufferedReader::readExact(void* out, size_t len, const char* what) {
    const uint64_t start = offset_;
    size_t n = read(out, len);
    if (n < len) {
        throwError(ErrorCode::Truncated, std::string("file ends inside ") + what + ": " +
                                             where(file_.path(), start) + " (" + std::to_string(len) +
                                             " bytes needed, " + std::to_string(n) + " present)");
    }
}

void BufferedReader::skip(uint64_t len) {
    uint64_t inBuf = end_ - pos_;
    if (len <= inBuf) {
        pos_ += len;
    } else {
        fileOffset_ += len - inBuf;
        pos_ = end_ = 0;
    }
    offset_ += len;
}

bool BufferedReader::atEof() { return pos_ == end_ && !fill(); }

BufferedWriter::BufferedWriter(File& file, uint64_t offset, size_t bufferSize)
    : file_(file), offset_(offset), limit_(bufferSize) {
    pending_.reserve(bufferSize);
}

void BufferedWriter::write(const void* data, size_t len) {
    if (pending_.size() + len > limit_) flush();
    if (len >= limit_) {
        file_.pwriteAll(data, len, offset_);
        offset_ += len;
        return;
    }
    const auto* p = static_cast<const char*>(data);
    pending_.insert(pending_.end(), p, p + len);
}

void BufferedWriter::flush() {
    if (pending_.empty()) return;
    file_.pwriteAll(pending_.data(), pending_.size(), offset_);
    offset_ += pending_.size();
    pending_.clear();
}

}  // namespace walb
