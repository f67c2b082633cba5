// bench-serve's reader of one streamed OpenAI-style completion: Server-Sent Events bytes in
// (as they arrive, split anywhere), token events with their arrival times out.
//
// A `data: {...}` event whose choices[0] carries text (`text` for /v1/completions,
// `delta.content` for /v1/chat/completions) is one token event, stamped with the time the
// bytes holding its end arrived. A chunk with no text (a finish_reason-only last chunk) is
// not a token; a `usage` object gives the server's token counts; `data: [DONE]` ends the
// stream; an `error` object or JSON that does not parse marks it failed.
#ifndef MYRMEX_BENCH_SSE_H
#define MYRMEX_BENCH_SSE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct SseStream {
    double *times;            // [n_events] arrival of each token event (seconds)
    int n_events, cap;
    int usage_prompt_tokens;  // -1 until a usage object says
    int usage_completion_tokens;
    bool done;                // [DONE] seen
    bool failed;
    char error[200];          // why it failed
    char *line;               // the current, unfinished line
    size_t line_len, line_cap;
} SseStream;

void sse_init(SseStream *s);
void sse_free(SseStream *s);
// Feeds bytes that arrived at time `now`. false when out of memory (s->failed is set).
bool sse_feed(SseStream *s, const char *data, size_t len, double now);

#endif
