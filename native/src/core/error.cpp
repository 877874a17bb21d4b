#include "core/error.hpp"

namespace walb {

const char* errorCodeName(ErrorCode code) {
    switch (code) {
        case ErrorCode::InvalidArgument:
            return "INVALID_ARGUMENT";
        case ErrorCode::Corruption:
            return "CORRUPTION";
        case ErrorCode::IoError:
            return "IO_ERROR";
        case ErrorCode::NotFound:
            return "NOT_FOUND";
        case ErrorCode::Unsupported:
            return "UNSUPPORTED";
        case ErrorCode::Truncated:
            return "TRUNCATED";
        case ErrorCode::Unavailable:
            return "UNAVAILABLE";
        case ErrorCode::Cancelled:
            return "CANCELLED";
    }
    return "UNKNOWN";
}

void throwError(ErrorCode code, const std::string& message) { throw Error(code, message); }

std::string where(const std::string& path, uint64_t offset) {
    return path + " at byte " + std::to_string(offset);
}

}  // namespace walb
