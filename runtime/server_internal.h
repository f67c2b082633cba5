// What the server's files share: the Server, its jobs, and the calls between the HTTP side
// (server_http.c) and the engine thread (server_engine.c).
//
// A Job is one HTTP request for completions. Its fields are owned as marked: "http" by the
// connection's handler, "engine" by the engine thread, "lock" under Server.lock. It is freed
// when its last reference goes: the HTTP request's, the engine thread's (while admitted) and
// a stream response's.
#ifndef MYRMEX_SERVER_INTERNAL_H
#define MYRMEX_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>

#include "server.h"
#include "server_metrics.h"
#include "server_request.h"
#include "server_response.h"

#define ENGINE_DEAD_MESSAGE "the model's tensor-parallel ranks failed; the server is stopping (restart it)"

typedef struct Buf {
    char *data;
    size_t len, cap;
} Buf;

int buf_append(Buf *b, const char *s, size_t n); // 0, or -1 when out of memory
void buf_free(Buf *b);

typedef struct Job Job;

typedef struct Choice {
    Job *job;
    int index;           // in the response's choices
    int64_t id;          // engine request id (0: not added)
    bool done, role_sent;
    int n_tokens;
    double t_last;       // time of its last token (inter-token latency)
} Choice;

typedef struct Server Server;

struct Job {
    // Set before submission, read-only after (http, then engine).
    Server *srv;
    ApiRequest rq;
    ApiMeta meta;
    int n_choices;
    double t_arrive;
    struct MHD_Connection *conn;
    int fd;                   // the connection's socket, peeked while suspended
    // lock
    int refs;
    bool suspended;           // waits for the engine thread to resume it
    bool gone;                // the client left, or the request ended on the HTTP side
    bool admitted;            // the engine took it: a stream can begin (SSE from here on)
    bool stream_started;      // its SSE response is queued
    bool done;                // out holds everything that will ever be sent
    int status;               // HTTP status of a whole answer (not admitted, or not a stream)
    Buf out;                  // the body, or the stream's pending bytes
    size_t sent;              // bytes of out already given to the stream
    Job *next;                // in Server.incoming
    // engine
    Choice *choices;          // [n_choices]
    int n_done;
    bool abort_wanted;        // copied from gone (or a shutdown) under the lock
    bool aborted, engine_error, shutdown, first_token_seen; // shutdown: aborted by server_stop
    Buf staged;               // stream bytes produced in this step, published after it
    Job *next_active;
};

// An answer the engine thread made for a job, and what it publishes after a turn.
typedef struct Answer {
    char *body; // mx_malloc'd: the whole body, a stream's last events, or an error
    int status;
} Answer;

typedef struct Publish {
    Job *job;
    Answer answer;       // body NULL: only staged stream bytes
    bool admitted;       // the engine took the job
    bool final;          // the job's last bytes: it leaves the engine thread
} Publish;

struct Server {
    ServerConfig cfg;
    MxEngine *engine;
    MxEngineInfo info;
    Tokenizer *tok;
    ApiContext ctx;
    char model_name[256];
    long long started;        // Unix seconds
    struct MHD_Daemon *daemon;
    int port;
    Metrics metrics;
    pthread_t engine_thread;
    bool engine_running;
    pthread_mutex_t lock;
    pthread_cond_t wake;      // the engine thread: work arrived, a client left, stop
    pthread_cond_t idle;      // server_stop: no job left
    // lock
    Job *incoming, *incoming_tail;
    int n_jobs;               // submitted and not yet released by the engine thread
    int n_live;               // admitted jobs not yet freed (their answer may still be sending)
    int pending_seqs;         // choices admitted and not yet finished
    int admit_limit;          // max_seqs + max_queue
    bool stopping, abort_all, stop_engine;
    double last_progress;     // when the engine last stepped (or was idle)
    double watchdog_logged;   // last_progress of the stall the watchdog last logged; -1: none
    bool engine_has_work, engine_failing;
    bool engine_dead;         // its tensor-parallel ranks failed: nothing can run any more
                              // (every request then gets 503 ENGINE_DEAD_MESSAGE)
    // engine
    Publish *pub;      // [pub_cap] this turn's answers and stream bytes to publish
    struct MHD_Connection **resume; // [pub_cap]
    int pub_cap;              // 2 * admit_limit + 2: a job appears at most twice per turn
    Job *active;
    TokenText tt;
    uint64_t seed_state;      // seeds of requests without one
};

double server_now(void); // monotonic seconds

// The engine thread (server_engine.c).
void *server_engine_main(void *server);
// Drops one reference to j (lock held); frees it with the last one.
void job_unref(Server *s, Job *j);

#endif
