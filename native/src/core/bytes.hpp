// Byte buffers that system calls and copies move data between. A buffer of a page or more starts on a page
// boundary.
//
// Why: the kernel copies file data with `rep movsb`, glibc's memcpy large pieces too, and on some CPUs (the
// AMD EPYC of our bench machine) that runs 4-7x slower when the destination lies 1 to 31 bytes past the
// source modulo 4096. malloc puts a large block 16 bytes into a fresh mapping, and file data starts on a
// page, so a pread of a page-aligned offset into a plain std::vector<char> of some MiB landed exactly there —
// or not, depending on the process's allocation history. Page-aligned buffers put every copy of 512-aligned
// file data at a multiple of 512 bytes (docs/testing.md, "Buffers on page boundaries"). Copies at other
// distances are placed by hand (compressRecord).
#pragma once
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <new>
#include <type_traits>
#include <utility>

#include "core/bytes.hpp"

namespace walb {

constexpr size_t kPageBytes = 4096;

constexpr size_t kHugePageBytes = 2u << 20;

// Smaller buffers come from operator new as usual.
inline bool pageAligned(size_t bytes) { return bytes >= kPageBytes; }

// A buffer of 2 MiB or more is a mapping of its own, in whole transparent huge pages where the kernel allows
// them (madvise mode), unmapped when freed. Touching fresh memory costs a page fault per page, 1 per 2 MiB
// instead of 512: on our bench VM the first fill of a 4 MiB buffer took 10-15 ms in 4 KiB pages and 0.3 ms in
// huge pages. Not from malloc: its arenas keep freed blocks, and advised huge pages there kept hundreds of
// MiB resident in a server (bench:hash, 847 MiB against 158). Under AddressSanitizer they come from its
// allocator, which checks them.
#if defined(__SANITIZE_ADDRESS__)
inline bool ownMapping(size_t) { return false; }
#else
inline bool ownMapping(size_t bytes) { return bytes >= kHugePageBytes; }
#endif

inline size_t hugeRounded(size_t bytes) {
    return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

inline void* allocateBytes(size_t bytes) {
    if (!pageAligned(bytes)) return ::operator new(bytes);
    if (!ownMapping(bytes)) {
        void* p = std::aligned_alloc(kPageBytes, (bytes + kPageBytes - 1) / kPageBytes * kPageBytes);
        if (p == nullptr) throw std::bad_alloc();
        return p;
    }
    // Mapped with a huge page's room to spare, then trimmed to a 2 MiB boundary on both sides.
    const size_t size = hugeRounded(bytes);
    void* m =
        ::mmap(nullptr, size + kHugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t start = reinterpret_cast<uintptr_t>(m);
    const uintptr_t aligned = (start + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    if (aligned > start) ::munmap(m, aligned - start);
    if (start + kHugePageBytes > aligned)
        ::munmap(reinterpret_cast<void*>(aligned + size), start + kHugePageBytes - aligned);
    ::madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);  // a hint: refused, small pages serve
    return reinterpret_cast<void*>(aligned);
}

inline void freeBytes(void* p, size_t bytes) {
    if (!pageAligned(bytes))
        ::operator delete(p);
    else if (!ownMapping(bytes))
        std::free(p);
    else
        ::munmap(p, hugeRounded(bytes));
}

// A growable byte buffer with std::vector<char>'s interface (the part this code uses) and its semantics: new
// bytes of resize() are zero, copies are deep. Not a std::vector with an allocator: libstdc++ copies into a
// vector with a custom allocator byte by byte, and its fast paths (memcpy, memset) are for std::allocator
// only.
class Bytes {
public:
    using value_type = char;
    using size_type = size_t;
    using iterator = char*;
    using const_iterator = const char*;

    Bytes() = default;
    explicit Bytes(size_t n) { resize(n); }
    Bytes(size_t n, char fill) { resize(n, fill); }
    template <class It, class = std::enable_if_t<!std::is_integral_v<It>>>
    Bytes(It first, It last) {
        assign(first, last);
    }
    Bytes(const Bytes& o) { append(o.data(), o.size()); }
    Bytes(Bytes&& o) noexcept { swap(o); }
    Bytes& operator=(const Bytes& o) {
        if (this != &o) {
            size_ = 0;
            append(o.data(), o.size());
        }
        return *this;
    }
    Bytes& operator=(Bytes&& o) noexcept {
        Bytes(std::move(o)).swap(*this);
        return *this;
    }
    ~Bytes() { freeBytes(p_, cap_); }

    char* data() noexcept { return p_; }
    const char* data() const noexcept { return p_; }
    size_t size() const noexcept { return size_; }
    size_t capacity() const noexcept { return cap_; }
    bool empty() const noexcept { return size_ == 0; }
    char& operator[](size_t i) noexcept { return p_[i]; }
    const char& operator[](size_t i) const noexcept { return p_[i]; }
    char& back() noexcept { return p_[size_ - 1]; }
    iterator begin() noexcept { return p_; }
    iterator end() noexcept { return p_ + size_; }
    const_iterator begin() const noexcept { return p_; }
    const_iterator end() const noexcept { return p_ + size_; }

    void reserve(size_t n) {
        if (n <= cap_) return;
        char* q = static_cast<char*>(allocateBytes(n));
        if (p_ != nullptr) std::memcpy(q, p_, size_);
        freeBytes(p_, cap_);
        p_ = q;
        cap_ = n;
    }
    void resize(size_t n, char fill = 0) {
        if (n > size_) {
            grow(n);
            std::memset(p_ + size_, fill, n - size_);
        }
        size_ = n;
    }
    void clear() noexcept { size_ = 0; }
    void shrink_to_fit() {
        if (size_ == cap_) return;
        Bytes copy(*this);
        swap(copy);
    }
    void push_back(char c) {
        grow(size_ + 1);
        p_[size_++] = c;
    }
    void assign(size_t n, char fill) {
        size_ = 0;
        resize(n, fill);
    }
    template <class It, class = std::enable_if_t<!std::is_integral_v<It>>>
    void assign(It first, It last) {
        size_ = 0;
        insert(end(), first, last);
    }
    // Inserts [first, last) before pos; [first, last) must not lie inside this buffer.
    template <class It>
    iterator insert(const_iterator pos, It first, It last) {
        const size_t at = size_t(pos - p_);
        using Category = typename std::iterator_traits<It>::iterator_category;
        if constexpr (!std::is_base_of_v<std::forward_iterator_tag, Category>) {
            Bytes read;  // a single pass (a stream): gather first
            for (; first != last; ++first) read.push_back(*first);
            return insert(p_ + at, read.begin(), read.end());
        }
        const size_t n = size_t(std::distance(first, last));
        grow(size_ + n);
        std::memmove(p_ + at + n, p_ + at, size_ - at);
        std::copy(first, last, p_ + at);
        size_ += n;
        return p_ + at;
    }
    void swap(Bytes& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(size_, o.size_);
        std::swap(cap_, o.cap_);
    }
    friend bool operator==(const Bytes& a, const Bytes& b) {
        return a.size_ == b.size_ && (a.size_ == 0 || std::memcmp(a.p_, b.p_, a.size_) == 0);
    }
    friend bool operator!=(const Bytes& a, const Bytes& b) { return !(a == b); }

private:
    void append(const char* src, size_t n) {
        grow(size_ + n);
        if (n > 0) std::memcpy(p_ + size_, src, n);
        size_ += n;
    }
    // Room for n bytes, at least doubling (appends in a loop stay linear).
    void grow(size_t n) {
        if (n > cap_) reserve(std::max(n, cap_ * 2));
    }
    char* p_ = nullptr;
    size_t size_ = 0;
    size_t cap_ = 0;
};

// Whether a copy from `src` to `dst` is at the slow distance: dst 1-31 bytes past src modulo the page.
inline bool slowCopyDistance(const void* dst, const void* src) {
    const uintptr_t d = (reinterpret_cast<uintptr_t>(dst) - reinterpret_cast<uintptr_t>(src)) % kPageBytes;
    return d != 0 && d < 32;
}

// Room for `n` bytes inside `buf` (grown only), starting 64 bytes past `other` modulo the page: a copy
// between the two, either way, and a copy of page-aligned file data into the room are then clear of the slow
// distance (unless `other` itself lies 4033-4063 bytes into a page).
inline char* roomClearOf(Bytes& buf, size_t n, const void* other) {
    if (buf.size() < n + kPageBytes) buf.resize(n + kPageBytes);
    const uintptr_t skew =
        (reinterpret_cast<uintptr_t>(other) + 64 - reinterpret_cast<uintptr_t>(buf.data())) % kPageBytes;
    return buf.data() + skew;
}

}  // namespace walb
