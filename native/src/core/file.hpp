// Thin RAII wrapper over a file descriptor: positional I/O that retries short transfers and reports
// failures with the path and offset. Regular files and block devices are handled alike.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace walb {

// Heap buffer aligned for O_DIRECT (4096 covers every logical/physical block size we accept).
class AlignedBuffer {
public:
    static constexpr size_t kAlign = 4096;
    AlignedBuffer() = default;
    explicit AlignedBuffer(size_t size) { resize(size); }
    void resize(size_t size);  // contents are not preserved
    char* data() { return ptr_.get(); }
    const char* data() const { return ptr_.get(); }
    size_t size() const { return size_; }

private:
    struct Free {
        void operator()(char* p) const;
    };
    std::unique_ptr<char, Free> ptr_;
    size_t size_ = 0;
    size_t capacity_ = 0;
};

class File {
public:
    enum class Mode { Read, ReadWrite, Create, CreateTruncate };
    File() = default;
    File(const std::string& path, Mode mode, bool direct = false) { open(path, mode, direct); }
    ~File();
    File(File&& other) noexcept;
    File& operator=(File&& other) noexcept;
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    // `direct` asks for O_DIRECT and silently falls back to buffered I/O where the target refuses it.
    void open(const std::string& path, Mode mode, bool direct = false);
    // Adopt an existing descriptor (e.g. stdout); it is not closed by this object.
    void adopt(int fd, const std::string& name);
    void close();
    bool isOpen() const { return fd_ >= 0; }
    bool isDirect() const { return direct_; }
    bool isBlockDevice() const { return blockDevice_; }
    int fd() const { return fd_; }
    const std::string& path() const { return path_; }

    // Size in bytes: st_size for files, BLKGETSIZE64 for block devices.
    uint64_t size() const;
    // Physical block size of a block device (BLKPBSZGET), 512 for regular files.
    uint32_t physicalBlockSize() const;

    void preadAll(void* buf, size_t len, uint64_t off) const;     // throws TRUNCATED at end of file
    size_t preadSome(void* buf, size_t len, uint64_t off) const;  // stops at end of file
    void pwriteAll(const void* buf, size_t len, uint64_t off);
    // Gathered write of `spans` (pointer, length) at `off`, retrying short writes.
    void pwritevAll(const std::vector<std::pair<const char*, size_t>>& spans, uint64_t off);
    void writeAll(const void* buf, size_t len);  // sequential (pipes, stdout)
    void truncate(uint64_t size);
    void fdatasync();
    void fsync();
    // Deallocate a range (regular files: punch hole; block devices: BLKDISCARD). Returns false if
    // unsupported.
    bool discard(uint64_t off, uint64_t len);
    // Write zeros over a range, preferring the cheap kernel paths.
    void writeZeroes(uint64_t off, uint64_t len);

private:
    int fd_ = -1;
    bool owned_ = false;
    bool direct_ = false;
    bool blockDevice_ = false;
    std::string path_;
};

// A read-only mapping of part of a file, unmapped when replaced or destroyed; empty where the file cannot be
// mapped (then the caller reads instead). The file must not shrink while mapped: reading a page past its end
// is SIGBUS.
class FileMapping {
public:
    FileMapping() = default;
    ~FileMapping();
    FileMapping(const FileMapping&) = delete;
    FileMapping& operator=(const FileMapping&) = delete;
    // Maps [off, off + len) of `f` (any offset; the page below it is mapped too); false if it cannot be
    // mapped.
    bool map(const File& f, uint64_t off, size_t len);
    void unmap();
    const char* data() const { return data_; }

private:
    void* base_ = nullptr;
    size_t mapped_ = 0;
    const char* data_ = nullptr;
};

void fsyncDirectoryOf(const std::string& path);
void renameDurably(const std::string& from, const std::string& to);

// An output file that appears under its final name only when complete: it is written as a temporary file in
// the same directory and commit() syncs it, renames it and syncs the directory. Dropped uncommitted, the
// temporary is removed, so a failed or killed run never leaves a half-written output behind.
class AtomicOutputFile {
public:
    explicit AtomicOutputFile(const std::string& path);
    ~AtomicOutputFile();
    File& file() { return file_; }
    void commit();

private:
    std::string path_, tmpPath_;
    File file_;
    bool committed_ = false;
};

}  // namespace walb
