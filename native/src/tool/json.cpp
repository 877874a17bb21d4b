#include "tool/json.hpp"

#include <cstdio>

namespace walb::tool {

namespace {
constexpr uint64_t kMaxSafeInteger = (1ull << 53) - 1;
}

Json& Json::set(std::string key, Json value) {
    std::get<Object>(v_).emplace_back(std::move(key), std::move(value));
    return *this;
}

Json& Json::push(Json value) {
    std::get<Array>(v_).push_back(std::move(value));
    return *this;
}

std::string Json::quote(const std::string& s) {
    std::string out = "\"";
    for (unsigned char ch : s) {
        switch (ch) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (ch < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", ch);
                    out += buf;
                } else {
                    out += static_cast<char>(ch);
                }
        }
    }
    return out + "\"";
}

std::string Json::dump(int indent, int depth) const {
    const std::string inner = indent ? "\n" + std::string(size_t(indent) * (depth + 1), ' ') : "";
    const std::string outer = indent ? "\n" + std::string(size_t(indent) * depth, ' ') : "";
    if (std::holds_alternative<std::nullptr_t>(v_)) return "null";
    if (auto* b = std::get_if<bool>(&v_)) return *b ? "true" : "false";
    // Beyond 2^53 a JSON number loses digits in JavaScript: such values (the invalid-lsid marker) are
    // strings.
    if (auto* n = std::get_if<uint64_t>(&v_))
        return *n > kMaxSafeInteger ? quote(std::to_string(*n)) : std::to_string(*n);
    if (auto* s = std::get_if<std::string>(&v_)) return quote(*s);
    if (auto* o = std::get_if<Object>(&v_)) {
        if (o->empty()) return "{}";
        std::string out = "{";
        for (size_t i = 0; i < o->size(); i++)
            out += (i ? "," : "") + inner + quote((*o)[i].first) + (indent ? ": " : ":") +
                   (*o)[i].second.dump(indent, depth + 1);
        return out + outer + "}";
    }
    const Array& a = std::get<Array>(v_);
    if (a.empty()) return "[]";
    std::string out = "[";
    for (size_t i = 0; i < a.size(); i++) out += (i ? "," : "") + inner + a[i].dump(indent, depth + 1);
    return out + outer + "]";
}

}  // namespace walb::tool
