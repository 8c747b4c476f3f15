# Included by CMake after llama.cpp's project() call (CMAKE_PROJECT_INCLUDE, set in
# .cargo/config.toml): llama-cpp-sys-2 turns llama.cpp's `common` library on by default
# (53 C++ files plus cpp-httplib), but sweep builds llama-cpp-2 without its `common`
# feature, so nothing links against it. Not building it saves minutes of a clean build
# (BENCHMARKS.md, "Build time").
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama: build common utils library" FORCE)
