// Messages of the native bulk path, in protobuf's wire format, encoded and parsed by hand so that no
// generated code is needed. One shape (proto/walb/v1/bulk.proto, FullSyncBulkRequest):
//   { token (1): string }                                   the first message of a stream
//   { data (2): { offset (1): uint64, data (2): bytes } }   every other one (same field as
//   FullSyncRequest.data)
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace walb::bulk {

constexpr uint32_t kTokenField = 1;
constexpr uint32_t kDataField = 2;
// The most bytes encodeDataHead writes: two tags, three 64-bit varints and a data tag.
constexpr size_t kDataHeadMax = 1 + 10 + 1 + 10 + 1 + 10;

size_t putVarint(uint8_t* out, uint64_t v);
std::string encodeToken(const std::string& token);
// The bytes that precede `length` data bytes of a bulk at `offset`; returns how many were written to `out`.
size_t encodeDataHead(uint8_t* out, uint64_t offset, uint64_t length);
// BulkDone { bytes (1): uint64 }
std::string encodeDone(uint64_t bytes);
uint64_t parseDone(const uint8_t* p, size_t n);

// A message as gRPC hands it over: its bytes in one or more pieces.
using Spans = std::vector<std::pair<const char*, size_t>>;

struct ParsedRequest {
    bool isToken = false;
    std::string token;
    uint64_t offset = 0;
    Spans data;  // the bulk's bytes, pieces of the message (not copied)
    size_t length = 0;
};

// Throws walb::Error(InvalidArgument) for anything but the two shapes above.
ParsedRequest parseRequest(const Spans& message);

}  // namespace walb::bulk
