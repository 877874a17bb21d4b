# The format core as the static library walb_core. It has no Node dependency: the addon (native/CMakeLists.txt),
# the native tests (native/test) and the fuzzers (native/fuzz) all build it from here.
find_package(PkgConfig REQUIRED)
pkg_check_modules(DEPS REQUIRED IMPORTED_TARGET libzstd liblz4 snappy libxxhash zlib liblzma)

file(GLOB CORE_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/../src/core/*.cpp)
add_library(walb_core STATIC ${CORE_SOURCES})
target_include_directories(walb_core PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../src)
target_compile_definitions(walb_core PUBLIC _FILE_OFFSET_BITS=64)
target_link_libraries(walb_core PUBLIC PkgConfig::DEPS pthread)
