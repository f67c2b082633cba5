// NVML through dlopen (see nvml.h). The few entry points used are declared here with
// NVML's C types (nvml.h from the driver is not needed to build).
#include "nvml.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"

#ifdef MYRMEX_HAVE_CUDA
#include "cuda_tools.h"
#endif

typedef int nvmlReturn_t;    // NVML_SUCCESS = 0
typedef void *nvmlDevice_t;
enum { NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2, NVML_TEMPERATURE_GPU = 0 };

typedef struct NvmlApi {
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*shutdown)(void);
    const char *(*error_string)(nvmlReturn_t);
    nvmlReturn_t (*by_index)(unsigned, nvmlDevice_t *);
    nvmlReturn_t (*by_pci)(const char *, nvmlDevice_t *);
    nvmlReturn_t (*name)(nvmlDevice_t, char *, unsigned);
    nvmlReturn_t (*driver)(char *, unsigned);
    nvmlReturn_t (*energy)(nvmlDevice_t, unsigned long long *);         // mJ
    nvmlReturn_t (*power)(nvmlDevice_t, unsigned *);                    // mW
    nvmlReturn_t (*power_limit)(nvmlDevice_t, unsigned *);              // mW
    nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned *);         // °C
    nvmlReturn_t (*clock)(nvmlDevice_t, int, unsigned *);               // MHz
    nvmlReturn_t (*throttle)(nvmlDevice_t, unsigned long long *);
} NvmlApi;

struct Nvml {
    void *lib;
    NvmlApi api;
    int n_gpus;
    nvmlDevice_t dev[NVML_MAX_GPUS];
    char name[NVML_MAX_GPUS][96], driver[80];
    // The monitor: a thread sampling every GPU into `sample`, then into `window` under
    // `lock`, until `stop`.
    pthread_t thread;
    bool running, stop;
    int period_ms;
    pthread_mutex_t lock;
    NvmlWindow window;
    NvmlState sample[NVML_MAX_GPUS];
};

static void say(char *why, size_t len, const char *fmt, const char *detail) {
    if (why && len) snprintf(why, len, fmt, detail);
}

// Looks a symbol up; required ones make the load fail, optional ones stay NULL.
static bool sym(void *lib, const char *name, void *fn) {
    void *p = dlsym(lib, name);
    memcpy(fn, &p, sizeof p); // object pointer to function pointer without a cast warning
    return p != NULL;
}

static bool load_api(void *lib, NvmlApi *a) {
    bool ok = sym(lib, "nvmlInit_v2", &a->init) && sym(lib, "nvmlShutdown", &a->shutdown) &&
              sym(lib, "nvmlErrorString", &a->error_string) && sym(lib, "nvmlDeviceGetHandleByIndex_v2", &a->by_index);
    if (!ok) return false;
    sym(lib, "nvmlDeviceGetHandleByPciBusId_v2", &a->by_pci);
    sym(lib, "nvmlDeviceGetName", &a->name);
    sym(lib, "nvmlSystemGetDriverVersion", &a->driver);
    sym(lib, "nvmlDeviceGetTotalEnergyConsumption", &a->energy);
    sym(lib, "nvmlDeviceGetPowerUsage", &a->power);
    sym(lib, "nvmlDeviceGetEnforcedPowerLimit", &a->power_limit);
    sym(lib, "nvmlDeviceGetTemperature", &a->temperature);
    sym(lib, "nvmlDeviceGetClockInfo", &a->clock);
    // Renamed "clocks event reasons" in newer drivers; the old name is still exported.
    if (!sym(lib, "nvmlDeviceGetCurrentClocksEventReasons", &a->throttle))
        sym(lib, "nvmlDeviceGetCurrentClocksThrottleReasons", &a->throttle);
    return true;
}

static bool find_device(Nvml *n, int cuda_index, nvmlDevice_t *dev, char *why, size_t why_len) {
    nvmlReturn_t r = -1;
#ifdef MYRMEX_HAVE_CUDA
    char bus[32];
    if (n->api.by_pci && cuda_device_pci_bus_id(cuda_index, bus, sizeof bus) == 0) r = n->api.by_pci(bus, dev);
#endif
    if (r != 0) r = n->api.by_index((unsigned)cuda_index, dev);
    if (r != 0 && why && why_len)
        snprintf(why, why_len, "NVML has no device for CUDA device %d: %s", cuda_index, n->api.error_string(r));
    return r == 0;
}

Nvml *nvml_open(const int *cuda_index, int n_gpus, char *why, size_t why_len) {
    const char *path = getenv("MYRMEX_NVML_LIBRARY");
    if (!path || !*path) path = "libnvidia-ml.so.1";
    if (n_gpus > NVML_MAX_GPUS) { // before reading cuda_index, which may hold fewer
        if (why && why_len) snprintf(why, why_len, "%d GPUs: NVML covers at most %d", n_gpus, NVML_MAX_GPUS);
        return NULL;
    }
    bool gpu = n_gpus > 0;
    for (int i = 0; i < n_gpus; i++) gpu = gpu && cuda_index[i] >= 0;
    if (!gpu) {
        say(why, why_len, "%s", "no GPU in use");
        return NULL;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        say(why, why_len, "cannot load %s (no NVIDIA driver?)", path);
        return NULL;
    }
    Nvml *n = mx_calloc(1, sizeof *n);
    if (!n || !load_api(lib, &n->api)) {
        say(why, why_len, "%s lacks the NVML entry points", path);
        mx_free(n);
        dlclose(lib);
        return NULL;
    }
    n->lib = lib;
    nvmlReturn_t r = n->api.init();
    if (r != 0) {
        say(why, why_len, "nvmlInit failed: %s", n->api.error_string(r));
        dlclose(lib);
        mx_free(n);
        return NULL;
    }
    for (int i = 0; i < n_gpus; i++) {
        if (!find_device(n, cuda_index[i], &n->dev[i], why, why_len)) {
            n->api.shutdown();
            dlclose(lib);
            mx_free(n);
            return NULL;
        }
        if (!n->api.name || n->api.name(n->dev[i], n->name[i], sizeof n->name[i]) != 0)
            snprintf(n->name[i], sizeof n->name[i], "unknown");
    }
    n->n_gpus = n_gpus;
    if (!n->api.driver || n->api.driver(n->driver, sizeof n->driver) != 0) snprintf(n->driver, sizeof n->driver, "unknown");
    pthread_mutex_init(&n->lock, NULL);
    return n;
}

void nvml_close(Nvml *n) {
    if (!n) return;
    if (n->running) {
        pthread_mutex_lock(&n->lock);
        n->stop = true;
        pthread_mutex_unlock(&n->lock);
        pthread_join(n->thread, NULL);
    }
    pthread_mutex_destroy(&n->lock);
    n->api.shutdown();
    dlclose(n->lib);
    mx_free(n);
}

int nvml_gpu_count(const Nvml *n) { return n ? n->n_gpus : 0; }

void nvml_read(Nvml *n, int gpu, NvmlState *s) {
    memset(s, 0, sizeof *s);
    nvmlDevice_t dev = n->dev[gpu];
    snprintf(s->name, sizeof s->name, "%s", n->name[gpu]);
    snprintf(s->driver, sizeof s->driver, "%s", n->driver);
    unsigned mw = 0, t = 0, sm = 0, mem = 0;
    if (n->api.power && n->api.power(dev, &mw) == 0) s->has_power = true, s->power_w = mw / 1000.0;
    if (n->api.power_limit && n->api.power_limit(dev, &mw) == 0) s->has_power_limit = true, s->power_limit_w = mw / 1000.0;
    if (n->api.temperature && n->api.temperature(dev, NVML_TEMPERATURE_GPU, &t) == 0) s->has_temp = true, s->temp_c = t;
    if (n->api.clock && n->api.clock(dev, NVML_CLOCK_SM, &sm) == 0 && n->api.clock(dev, NVML_CLOCK_MEM, &mem) == 0)
        s->has_clocks = true, s->sm_mhz = sm, s->mem_mhz = mem;
    if (n->api.throttle && n->api.throttle(dev, &s->throttle) == 0) s->has_throttle = true;
}

void nvml_state_sum(const NvmlState *g, int n, NvmlState *out) {
    memset(out, 0, sizeof *out);
    if (n < 1) return;
    *out = g[0];
    bool alike = true;
    for (int i = 1; i < n; i++) {
        const NvmlState *s = &g[i];
        alike = alike && strcmp(s->name, g[0].name) == 0;
        out->has_power = out->has_power && s->has_power;
        out->power_w += s->power_w;
        out->has_power_limit = out->has_power_limit && s->has_power_limit;
        out->power_limit_w += s->power_limit_w;
        out->has_temp = out->has_temp && s->has_temp; // the hottest, only when every GPU says
        if (s->temp_c > out->temp_c) out->temp_c = s->temp_c;
        out->has_clocks = out->has_clocks && s->has_clocks; // the slowest GPU paces the ranks
        if (s->sm_mhz < out->sm_mhz) out->sm_mhz = s->sm_mhz;
        if (s->mem_mhz < out->mem_mhz) out->mem_mhz = s->mem_mhz;
        out->has_throttle = out->has_throttle || s->has_throttle;
        out->throttle |= s->throttle;
    }
    if (n > 1 && alike) {
        snprintf(out->name, sizeof out->name, "%d x %.80s", n, g[0].name); // NVML names are shorter
    } else {
        size_t at = strlen(out->name);
        for (int i = 1; i < n && at < sizeof out->name; i++)
            at += (size_t)snprintf(out->name + at, sizeof out->name - at, " + %s", g[i].name);
    }
}

bool nvml_energy_joules(Nvml *n, double *joules) {
    if (!n || !n->api.energy) return false;
    double sum = 0;
    for (int i = 0; i < n->n_gpus; i++) {
        unsigned long long mj = 0;
        if (n->api.energy(n->dev[i], &mj) != 0) return false;
        sum += (double)mj / 1000.0;
    }
    *joules = sum;
    return true;
}

// ---- the monitor ---------------------------------------------------------------------------

void nvml_window_init(NvmlWindow *w) { *w = (NvmlWindow){.sm_mhz_min = ~0u}; }

void nvml_window_add(NvmlWindow *w, const NvmlState *g, int n) {
    w->samples++;
    bool all_power = n > 0;
    double power = 0;
    for (int i = 0; i < n; i++) {
        const NvmlState *s = &g[i];
        if (s->has_throttle) w->throttle_any |= s->throttle;
        if (s->has_temp && s->temp_c > w->temp_max_c) w->temp_max_c = s->temp_c;
        if (s->has_clocks && s->sm_mhz < w->sm_mhz_min) w->sm_mhz_min = s->sm_mhz;
        if (s->has_clocks && s->sm_mhz > w->sm_mhz_max) w->sm_mhz_max = s->sm_mhz;
        all_power = all_power && s->has_power;
        power += s->power_w;
    }
    if (all_power && power > w->power_max_w) w->power_max_w = power; // a partial sum would understate it
}

static void *monitor_main(void *arg) {
    Nvml *n = arg;
    struct timespec period = {.tv_sec = n->period_ms / 1000, .tv_nsec = (long)(n->period_ms % 1000) * 1000000L};
    for (;;) {
        for (int i = 0; i < n->n_gpus; i++) nvml_read(n, i, &n->sample[i]); // outside the lock: NVML calls are slow
        pthread_mutex_lock(&n->lock);
        bool stop = n->stop;
        nvml_window_add(&n->window, n->sample, n->n_gpus);
        pthread_mutex_unlock(&n->lock);
        if (stop) return NULL;
        nanosleep(&period, NULL);
    }
}

bool nvml_monitor_start(Nvml *n, int period_ms) {
    if (!n || n->running || period_ms < 1) return false;
    n->period_ms = period_ms;
    nvml_window_init(&n->window);
    n->stop = false;
    if (pthread_create(&n->thread, NULL, monitor_main, n) != 0) return false;
    n->running = true;
    return true;
}

void nvml_monitor_take(Nvml *n, NvmlWindow *out) {
    pthread_mutex_lock(&n->lock);
    *out = n->window;
    nvml_window_init(&n->window);
    pthread_mutex_unlock(&n->lock);
    if (out->samples == 0 || out->sm_mhz_min == ~0u) out->sm_mhz_min = 0;
}

// ---- throttle reasons ------------------------------------------------------------------------

static const struct {
    unsigned long long bit;
    const char *name;
    bool slowdown;
} reasons[] = {
    {0x1ull, "gpu_idle", false},
    {0x2ull, "applications_clocks_setting", false},
    {0x4ull, "sw_power_cap", true},
    {0x8ull, "hw_slowdown", true},
    {0x10ull, "sync_boost", false},
    {0x20ull, "sw_thermal_slowdown", true},
    {0x40ull, "hw_thermal_slowdown", true},
    {0x80ull, "hw_power_brake_slowdown", true},
    {0x100ull, "display_clock_setting", false},
};

bool nvml_throttle_is_slowdown(unsigned long long r) {
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
        if (reasons[i].slowdown && (r & reasons[i].bit)) return true;
    return false;
}

void nvml_throttle_names(unsigned long long r, char *buf, size_t len) {
    if (!len) return;
    buf[0] = '\0';
    size_t at = 0;
    unsigned long long known = 0;
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++) {
        known |= reasons[i].bit;
        if (!(r & reasons[i].bit) || at >= len) continue;
        at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? "," : "", reasons[i].name);
    }
    if ((r & ~known) && at < len) at += (size_t)snprintf(buf + at, len - at, "%sother_0x%llx", at ? "," : "", r & ~known);
    if (r == 0) snprintf(buf, len, "none");
}
