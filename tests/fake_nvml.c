// A stand-in for libnvidia-ml.so.1 with four made-up GPUs and fixed readings, so
// test_bench_support can check the NVML module over several GPUs (energy summed, states
// merged, the monitor's window) on a machine without a GPU or driver. Loaded through
// MYRMEX_NVML_LIBRARY; only the entry points nvml.c looks up, with NVML's C types.
//
// GPU i (handle i + 1): energy (i + 1) * 1000 J, power 100 + 50 i W, limit 700 W,
// temperature 40 + i °C, SM clock 1980 - 100 i MHz, memory clock 2619 MHz, clock event
// reasons: GPU 0 idle (0x1), the others a software power cap (0x4).
#include <stdint.h>
#include <stdio.h>

typedef void *nvmlDevice_t;
enum { FAKE_GPUS = 4, NVML_ERROR_INVALID_ARGUMENT = 2 };

// The GPU a handle names, or -1.
static int gpu(nvmlDevice_t d) {
    intptr_t i = (intptr_t)d - 1;
    return i >= 0 && i < FAKE_GPUS ? (int)i : -1;
}

int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int r) { return r == NVML_ERROR_INVALID_ARGUMENT ? "Invalid Argument" : "Unknown Error"; }

int nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *d) {
    if (index >= FAKE_GPUS) return NVML_ERROR_INVALID_ARGUMENT;
    *d = (nvmlDevice_t)(intptr_t)(index + 1);
    return 0;
}

int nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned len) {
    if (gpu(d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, len, "Fake GPU");
    return 0;
}

int nvmlSystemGetDriverVersion(char *v, unsigned len) {
    snprintf(v, len, "1.2.3");
    return 0;
}

int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    if (gpu(d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *mj = (unsigned long long)(gpu(d) + 1) * 1000000ull;
    return 0;
}

int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned *mw) {
    if (gpu(d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *mw = 100000u + 50000u * (unsigned)gpu(d);
    return 0;
}

int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned *mw) {
    if (gpu(d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *mw = 700000u;
    return 0;
}

int nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned *c) {
    if (gpu(d) < 0 || sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *c = 40u + (unsigned)gpu(d);
    return 0;
}

int nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned *mhz) {
    if (gpu(d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *mhz = type == 1 ? 1980u - 100u * (unsigned)gpu(d) : 2619u;
    return 0;
}

int nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *reasons) {
    if (gpu(d) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *reasons = gpu(d) == 0 ? 0x1ull : 0x4ull;
    return 0;
}
