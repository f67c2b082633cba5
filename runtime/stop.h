// Stop strings on streamed text: the output ends just before the first occurrence of any
// stop string, even when one arrives split over several pushes (detokenized tokens).
//
// Text is released as soon as it is certain: everything except the longest tail that could
// still grow into a stop string (at most the longest stop string minus one byte) is given
// out; that tail is held until the next push decides it. So a client never sees any part
// of a stop string. Stop strings are valid UTF-8 and the text pushed is whole characters,
// so released text is always whole characters too.
#ifndef MYRMEX_STOP_H
#define MYRMEX_STOP_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define STOP_MAX_STRINGS 16
#define STOP_MAX_BYTES 256 // per stop string

typedef struct StopText {
    char **stops;   // [n] copies
    size_t *lens;   // [n]
    int n;
    char *buf;      // held tail, then the text of the current push
    size_t n_held, cap;
    bool matched;
} StopText;

// Copies stops[0..n). MX_ERR_ARG for more than STOP_MAX_STRINGS, an empty or NULL string,
// one longer than STOP_MAX_BYTES, or one that is not valid UTF-8; MX_ERR_NOMEM. On error
// *s is empty (stop_text_free is still safe).
MxStatus stop_text_init(StopText *s, const char *const *stops, int n);
void stop_text_free(StopText *s);

// Feeds text[0..len). *out / *n_out: the text now final, valid until the next call. When a
// stop string completes, *matched is set, the released text ends right before it, and the
// stream is over (later pushes release nothing). Errors: MX_ERR_NOMEM (nothing released,
// the held tail kept).
MxStatus stop_text_push(StopText *s, const char *text, size_t len, const char **out, size_t *n_out, bool *matched);
// The end of the stream without a match: releases the held tail.
void stop_text_flush(StopText *s, const char **out, size_t *n_out);

#endif
