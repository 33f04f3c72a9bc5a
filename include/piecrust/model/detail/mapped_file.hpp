#pragma once
// MappedFile: a read-only memory mapping of a whole file (POSIX mmap), released on destruction.

#include <piecrust/core/error.hpp>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace piecrust::detail {

class MappedFile {
 public:
  /// Maps `path` read-only. Throws InvalidArgument when the file cannot be opened or mapped.
  explicit MappedFile(std::string const& path) {
    int const fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail<InvalidArgument>("cannot open '", path, "': ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int const e = errno;
      ::close(fd);
      fail<InvalidArgument>("cannot stat '", path, "': ", std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {  // a FIFO or device has no size to check a file's counts against
      ::close(fd);
      fail<InvalidArgument>("cannot map '", path, "': not a regular file");
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int const e = errno;
        ::close(fd);
        fail<InvalidArgument>("cannot mmap '", path, "' (", size_, " bytes): ", std::strerror(e));
      }
      data_ = static_cast<std::byte const*>(p);
    }
    ::close(fd);
  }
  MappedFile(MappedFile const&) = delete;
  MappedFile& operator=(MappedFile const&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  [[nodiscard]] std::span<std::byte const> bytes() const noexcept { return {data_, size_}; }

 private:
  std::byte const* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace piecrust::detail
