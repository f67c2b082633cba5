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
    nvmlDevice_t dev;
    char name[96], driver[80];
    // The monitor: a thread sampling into `window` under `lock` until `stop`.
    pthread_t thread;
    bool running, stop;
    int period_ms;
    pthread_mutex_t lock;
    NvmlWindow window;
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

static bool find_device(Nvml *n, int cuda_index, char *why, size_t why_len) {
    nvmlReturn_t r = -1;
#ifdef MYRMEX_HAVE_CUDA
    char bus[32];
    if (n->api.by_pci && cuda_device_pci_bus_id(cuda_index, bus, sizeof bus) == 0) r = n->api.by_pci(bus, &n->dev);
#endif
    if (r != 0) r = n->api.by_index((unsigned)cuda_index, &n->dev);
    if (r != 0) say(why, why_len, "NVML has no device for CUDA device %s", n->api.error_string(r));
    return r == 0;
}

Nvml *nvml_open(int cuda_index, char *why, size_t why_len) {
    const char *path = getenv("MYRMEX_NVML_LIBRARY");
    if (!path || !*path) path = "libnvidia-ml.so.1";
    if (cuda_index < 0) {
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
    if (!find_device(n, cuda_index, why, why_len)) {
        n->api.shutdown();
        dlclose(lib);
        mx_free(n);
        return NULL;
    }
    if (!n->api.name || n->api.name(n->dev, n->name, sizeof n->name) != 0) snprintf(n->name, sizeof n->name, "unknown");
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

void nvml_read(Nvml *n, NvmlState *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", n->name);
    snprintf(s->driver, sizeof s->driver, "%s", n->driver);
    unsigned mw = 0, t = 0, sm = 0, mem = 0;
    if (n->api.power && n->api.power(n->dev, &mw) == 0) s->has_power = true, s->power_w = mw / 1000.0;
    if (n->api.power_limit && n->api.power_limit(n->dev, &mw) == 0) s->has_power_limit = true, s->power_limit_w = mw / 1000.0;
    if (n->api.temperature && n->api.temperature(n->dev, NVML_TEMPERATURE_GPU, &t) == 0) s->has_temp = true, s->temp_c = t;
    if (n->api.clock && n->api.clock(n->dev, NVML_CLOCK_SM, &sm) == 0 && n->api.clock(n->dev, NVML_CLOCK_MEM, &mem) == 0)
        s->has_clocks = true, s->sm_mhz = sm, s->mem_mhz = mem;
    if (n->api.throttle && n->api.throttle(n->dev, &s->throttle) == 0) s->has_throttle = true;
}

bool nvml_energy_joules(Nvml *n, double *joules) {
    unsigned long long mj = 0;
    if (!n || !n->api.energy || n->api.energy(n->dev, &mj) != 0) return false;
    *joules = (double)mj / 1000.0;
    return true;
}

// ---- the monitor ---------------------------------------------------------------------------

static void window_reset(NvmlWindow *w) { *w = (NvmlWindow){.sm_mhz_min = ~0u}; }

static void *monitor_main(void *arg) {
    Nvml *n = arg;
    struct timespec period = {.tv_sec = n->period_ms / 1000, .tv_nsec = (long)(n->period_ms % 1000) * 1000000L};
    for (;;) {
        NvmlState s;
        nvml_read(n, &s);
        pthread_mutex_lock(&n->lock);
        bool stop = n->stop;
        NvmlWindow *w = &n->window;
        w->samples++;
        if (s.has_throttle) w->throttle_any |= s.throttle;
        if (s.has_temp && s.temp_c > w->temp_max_c) w->temp_max_c = s.temp_c;
        if (s.has_clocks && s.sm_mhz < w->sm_mhz_min) w->sm_mhz_min = s.sm_mhz;
        if (s.has_clocks && s.sm_mhz > w->sm_mhz_max) w->sm_mhz_max = s.sm_mhz;
        if (s.has_power && s.power_w > w->power_max_w) w->power_max_w = s.power_w;
        pthread_mutex_unlock(&n->lock);
        if (stop) return NULL;
        nanosleep(&period, NULL);
    }
}

bool nvml_monitor_start(Nvml *n, int period_ms) {
    if (!n || n->running || period_ms < 1) return false;
    n->period_ms = period_ms;
    window_reset(&n->window);
    n->stop = false;
    if (pthread_create(&n->thread, NULL, monitor_main, n) != 0) return false;
    n->running = true;
    return true;
}

void nvml_monitor_take(Nvml *n, NvmlWindow *out) {
    pthread_mutex_lock(&n->lock);
    *out = n->window;
    window_reset(&n->window);
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
