// How this binary was built, for run manifests: the git commit and whether the tree had
// uncommitted changes (both read when CMake configured the build: reconfigure after a
// commit to refresh them), build type, C flags, compiler, sanitizers, CUDA.
#ifndef MYRMEX_BUILD_INFO_H
#define MYRMEX_BUILD_INFO_H

#include <stdbool.h>

typedef struct BuildInfo {
    const char *commit;     // "ddc11e5a1b2c" or "unknown" (not a git checkout)
    bool dirty;             // uncommitted changes at configure time
    const char *build_type; // "Release", "RelWithDebInfo", ...
    const char *c_flags;    // CMAKE_C_FLAGS + the build type's flags
    const char *compiler;   // "gcc 12.2.0"
    bool sanitize;          // ASan + UBSan
    bool cuda;              // the CUDA backend is compiled in
    const char *cuda_version; // nvcc's version, "" without CUDA
} BuildInfo;

void build_info(BuildInfo *out);

#endif
