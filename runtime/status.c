// Status names, texts and the per-thread detail of the last failure.
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
#define MX_STATUS_NAME(name, text) #name,
    MX_STATUS_LIST(MX_STATUS_NAME)
#undef MX_STATUS_NAME
};

static const char *const status_texts[] = {
#define MX_STATUS_TEXT(name, text) text,
    MX_STATUS_LIST(MX_STATUS_TEXT)
#undef MX_STATUS_TEXT
};

static _Thread_local char last_error[1024];
static _Thread_local MxStatus last_status;

const char *mx_status_name(MxStatus s) {
    return (unsigned)s < MX_STATUS_COUNT ? status_names[s] : "?";
}

const char *mx_status_text(MxStatus s) {
    return (unsigned)s < MX_STATUS_COUNT ? status_texts[s] : "unknown status";
}

MxStatus mx_fail(MxStatus code, const char *fmt, ...) {
    int n = snprintf(last_error, sizeof last_error, "%s", mx_status_text(code));
    if (fmt && n >= 0 && (size_t)n < sizeof last_error - 2) {
        last_error[n++] = ':';
        last_error[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(last_error + n, sizeof last_error - (size_t)n, fmt, ap);
        va_end(ap);
    }
    last_status = code;
    return code;
}

const char *mx_last_error(void) { return last_error; }

const char *mx_last_detail(void) {
    const char *text = mx_status_text(last_status);
    size_t n = strlen(text);
    return strncmp(last_error, text, n) == 0 && strncmp(last_error + n, ": ", 2) == 0 ? last_error + n + 2 : last_error;
}

MxStatus mx_last_status(void) { return last_status; }
