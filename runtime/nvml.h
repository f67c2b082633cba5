// NVIDIA's management library (NVML), loaded at run time with dlopen so that myrmex builds
// and runs without it: a GPU's name, driver, energy counter, power, power limit, clocks,
// temperature and throttle reasons, for `bench`'s energy per token and run manifest.
//
// Without libnvidia-ml.so.1 (no driver, a CPU machine) nvml_open returns NULL with the
// reason, and every figure it would give is reported "unavailable", never guessed.
// MYRMEX_NVML_LIBRARY=PATH loads another file instead (tests point it at nothing).
//
// A monitor thread samples power, clocks, temperature and throttle reasons every few tens
// of milliseconds while a benchmark runs, so a slowdown between two readings is not missed
// (a reading only at the end of a run would see only the last moment).
//
// One handle covers every GPU a process uses (tensor-parallel ranks on several GPUs): the
// energy counter and the monitor's power are sums over them, a throttle on any one shows.
#ifndef MYRMEX_NVML_H
#define MYRMEX_NVML_H

#include <stdbool.h>
#include <stddef.h>

typedef struct Nvml Nvml;

#define NVML_MAX_GPUS 64 // the most tensor-parallel ranks (SHARD_MAX_TP), so the most GPUs

// Loads NVML and finds the GPUs that CUDA numbers cuda_index[0..n) (each matched by PCI bus
// id in CUDA builds, since NVML and CUDA may order devices differently; by index otherwise).
// Returns NULL when NVML or any of the devices is unavailable (a sum missing one GPU would
// be wrong, not approximate), with the reason in why[0..why_len): "no GPU in use" when n is
// 0 or an index is negative (the CPU backend).
Nvml *nvml_open(const int *cuda_index, int n, char *why, size_t why_len);
// Stops the monitor and unloads NVML. NULL is fine.
void nvml_close(Nvml *n);

// One reading; each has_* false when the driver does not report that figure.
typedef struct NvmlState {
    char name[96];                // "NVIDIA H200"
    char driver[80];              // "550.54.15"
    bool has_power, has_power_limit, has_temp, has_clocks, has_throttle;
    double power_w;               // board power now
    double power_limit_w;         // enforced power limit
    unsigned temp_c;              // GPU core temperature
    unsigned sm_mhz, mem_mhz;     // current SM and memory clocks
    unsigned long long throttle;  // clock event reasons (nvmlClocksThrottleReasons bits)
} NvmlState;

// GPUs the handle covers (the n given to nvml_open).
int nvml_gpu_count(const Nvml *n);
// GPU `gpu` (0..count-1, in nvml_open's order) now.
void nvml_read(Nvml *n, int gpu, NvmlState *out);
// All of them as one: power and power limit summed (each only when every GPU reports it),
// temperature the highest, clocks the lowest, throttle reasons OR'd, name "NAME" for one
// GPU, "N x NAME" for N alike, else the names joined with " + ".
void nvml_state_sum(const NvmlState *gpus, int n, NvmlState *out);

// The total energy counter summed over the GPUs (joules since the driver loaded; Volta and
// newer). Its resolution is 1 mJ but the driver refreshes it only every few to tens of
// milliseconds, so differences over short windows are coarse. false when any GPU lacks it.
bool nvml_energy_joules(Nvml *n, double *joules);

// Extremes over a window of monitor samples, each sample a reading of every GPU.
typedef struct NvmlWindow {
    int samples;
    unsigned long long throttle_any; // OR of every sample's reasons, every GPU's
    unsigned temp_max_c, sm_mhz_min, sm_mhz_max; // over every GPU
    double power_max_w;              // the highest total board power of one sample
} NvmlWindow;

// An empty window; nvml_window_add folds one sample of n GPUs into it.
void nvml_window_init(NvmlWindow *w);
void nvml_window_add(NvmlWindow *w, const NvmlState *gpus, int n);

// Starts the sampling thread (period in milliseconds, >= 1). false when it cannot start.
bool nvml_monitor_start(Nvml *n, int period_ms);
// The window since the previous take (or the start), then a new window begins.
void nvml_monitor_take(Nvml *n, NvmlWindow *out);

// Whether reasons include a slowdown that lowers clocks under load: software power cap,
// hardware slowdown, software or hardware thermal slowdown, power brake. (Idle, application
// clock settings, sync boost and display clock settings are not slowdowns.)
bool nvml_throttle_is_slowdown(unsigned long long reasons);
// "sw_power_cap,hw_thermal_slowdown" ("none" for 0) into buf.
void nvml_throttle_names(unsigned long long reasons, char *buf, size_t len);

#endif
