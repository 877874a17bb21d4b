// Errors of the format core. Every failure carries a stable code that the addon passes to JS as `err.code`.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace walb {

enum class ErrorCode {
    InvalidArgument,  // the caller asked for something impossible (bad option, bad range)
    Corruption,       // data on disk or in a file does not match its format or checksum
    IoError,          // the operating system failed a read, write, open or sync
    NotFound,         // a file or device does not exist
    Unsupported,      // valid input using a feature we do not implement
    Truncated,        // a file ends in the middle of a structure
    Unavailable,      // a peer cannot be reached, stopped answering or failed the transfer
    Cancelled,        // the caller cancelled the work
};

const char* errorCodeName(ErrorCode code);

class Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ErrorCode code() const { return code_; }

private:
    ErrorCode code_;
};

[[noreturn]] void throwError(ErrorCode code, const std::string& message);
// Message helper naming a file and a byte offset, the two things an operator needs to find bad data.
std::string where(const std::string& path, uint64_t offset);

}  // namespace walb
