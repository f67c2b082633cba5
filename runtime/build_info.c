// Build facts baked in by CMake (see build_info.h); CMake defines the MYRMEX_BUILD_* macros
// for this file only, so a reconfigure recompiles just it.
#include "build_info.h"

#ifndef MYRMEX_BUILD_COMMIT
#define MYRMEX_BUILD_COMMIT "unknown"
#endif
#ifndef MYRMEX_BUILD_DIRTY
#define MYRMEX_BUILD_DIRTY 0
#endif
#ifndef MYRMEX_BUILD_TYPE
#define MYRMEX_BUILD_TYPE "unknown"
#endif
#ifndef MYRMEX_BUILD_C_FLAGS
#define MYRMEX_BUILD_C_FLAGS ""
#endif
#ifndef MYRMEX_BUILD_SANITIZE
#define MYRMEX_BUILD_SANITIZE 0
#endif
#ifndef MYRMEX_BUILD_CUDA_VERSION
#define MYRMEX_BUILD_CUDA_VERSION ""
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

void build_info(BuildInfo *out) {
#ifdef __clang__
    const char *compiler = "clang " __clang_version__;
#else
    const char *compiler = "gcc " STR(__GNUC__) "." STR(__GNUC_MINOR__) "." STR(__GNUC_PATCHLEVEL__);
#endif
#ifdef MYRMEX_HAVE_CUDA
    bool cuda = true;
#else
    bool cuda = false;
#endif
    *out = (BuildInfo){.commit = MYRMEX_BUILD_COMMIT, .dirty = MYRMEX_BUILD_DIRTY, .build_type = MYRMEX_BUILD_TYPE,
                       .c_flags = MYRMEX_BUILD_C_FLAGS, .compiler = compiler, .sanitize = MYRMEX_BUILD_SANITIZE,
                       .cuda = cuda, .cuda_version = cuda ? MYRMEX_BUILD_CUDA_VERSION : ""};
}
