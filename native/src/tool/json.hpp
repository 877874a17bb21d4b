// The JSON walb-tool prints for --json: objects keep the order their fields were set in, and the text is
// indented as JSON.stringify(value, null, 2) indents it, so that the output reads as the other tools' does.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace walb::tool {

class Json {
public:
    Json() : v_(nullptr) {}
    Json(bool b) : v_(b) {}
    Json(uint64_t n) : v_(n) {}
    Json(uint32_t n) : v_(uint64_t(n)) {}
    Json(int n) : v_(uint64_t(n)) {}
    Json(std::string s) : v_(std::move(s)) {}
    Json(const char* s) : v_(std::string(s)) {}
    static Json object() { return Json(Object{}); }
    static Json array() { return Json(Array{}); }

    // Sets a field of an object (in the order of the calls) / appends to an array.
    Json& set(std::string key, Json value);
    Json& push(Json value);

    // Indented by `indent` spaces per level, starting at `depth` (0 = no indentation: one line).
    std::string dump(int indent = 2, int depth = 0) const;

    static std::string quote(const std::string& s);

private:
    using Object = std::vector<std::pair<std::string, Json>>;
    using Array = std::vector<Json>;
    explicit Json(Object o) : v_(std::move(o)) {}
    explicit Json(Array a) : v_(std::move(a)) {}
    std::variant<std::nullptr_t, bool, uint64_t, std::string, Object, Array> v_;
};

}  // namespace walb::tool
