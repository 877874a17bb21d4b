#include "bulk/bulk_wire.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace walb::bulk {
namespace {

bool getVarint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
        const uint8_t b = *p++;
        v |= uint64_t(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

[[noreturn]] void bad(const char* what) {
    throwError(ErrorCode::InvalidArgument, std::string("bad bulk message: ") + what);
}

}  // namespace

size_t putVarint(uint8_t* out, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = uint8_t(v | 0x80);
        v >>= 7;
    }
    out[n++] = uint8_t(v);
    return n;
}

std::string encodeToken(const std::string& token) {
    uint8_t head[11];
    head[0] = kTokenField << 3 | 2;
    const size_t n = 1 + putVarint(head + 1, token.size());
    return std::string(reinterpret_cast<char*>(head), n) + token;
}

size_t encodeDataHead(uint8_t* out, uint64_t offset, uint64_t length) {
    uint8_t inner[1 + 10 + 1 + 10];
    size_t k = 0;
    inner[k++] = 1 << 3 | 0;  // offset: varint
    k += putVarint(inner + k, offset);
    inner[k++] = 2 << 3 | 2;  // data: length-delimited
    k += putVarint(inner + k, length);
    size_t n = 0;
    out[n++] = kDataField << 3 | 2;
    n += putVarint(out + n, k + length);
    for (size_t i = 0; i < k; i++) out[n++] = inner[i];
    return n;
}

std::string encodeDone(uint64_t bytes) {
    uint8_t buf[11];
    buf[0] = 1 << 3 | 0;
    return std::string(reinterpret_cast<char*>(buf), 1 + putVarint(buf + 1, bytes));
}

uint64_t parseDone(const uint8_t* p, size_t n) {
    const uint8_t* end = p + n;
    uint64_t tag, bytes = 0;
    if (n == 0) return 0;  // proto3: a zero count is not on the wire
    if (!getVarint(p, end, tag) || tag != (1 << 3 | 0) || !getVarint(p, end, bytes) || p != end)
        bad("not a BulkDone");
    return bytes;
}

namespace {

// Reads a message that lies in pieces as one byte sequence.
class SpanReader {
public:
    explicit SpanReader(const Spans& spans) : spans_(spans) {
        for (const auto& s : spans) left_ += s.second;
    }
    size_t left() const { return left_; }
    bool varint(uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64 && left_ > 0; shift += 7) {
            const uint8_t b = uint8_t(*take(1).first);
            v |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return true;
        }
        return false;
    }
    // The next n bytes (n <= left()) as pieces of the message.
    Spans bytes(size_t n) {
        Spans out;
        while (n > 0) {
            const auto piece = take(n);
            out.push_back(piece);
            n -= piece.second;
        }
        return out;
    }

private:
    // Up to n bytes of the current piece.
    std::pair<const char*, size_t> take(size_t n) {
        while (at_ == spans_[i_].second) {
            i_++;
            at_ = 0;
        }
        const size_t k = std::min(n, spans_[i_].second - at_);
        const std::pair<const char*, size_t> piece{spans_[i_].first + at_, k};
        at_ += k;
        left_ -= k;
        return piece;
    }

    const Spans& spans_;
    size_t i_ = 0, at_ = 0, left_ = 0;
};

}  // namespace

ParsedRequest parseRequest(const Spans& message) {
    SpanReader in(message);
    ParsedRequest r;
    uint64_t tag, len;
    if (!in.varint(tag) || (tag & 7) != 2 || !in.varint(len) || len != in.left())
        bad("not a single length-delimited field");
    if (tag >> 3 == kTokenField) {
        r.isToken = true;
        for (const auto& [p, n] : in.bytes(len)) r.token.append(p, n);
        return r;
    }
    if (tag >> 3 != kDataField) bad("unknown field");
    bool haveData = false;
    while (in.left() > 0) {
        if (!in.varint(tag)) bad("truncated tag");
        if (tag == (1 << 3 | 0)) {
            if (!in.varint(r.offset)) bad("truncated offset");
        } else if (tag == (2 << 3 | 2)) {
            if (!in.varint(len) || len > in.left()) bad("truncated data");
            r.data = in.bytes(len);
            r.length = len;
            haveData = true;
        } else {
            bad("unknown field in data");
        }
    }
    if (!haveData) bad("data without bytes");
    return r;
}

}  // namespace walb::bulk
