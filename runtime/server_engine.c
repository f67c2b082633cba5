// The server's engine thread: the only thread that touches the engine (myrmex.h is
// single-threaded by contract). Each turn of its loop:
//
//   lock:   take the incoming jobs; mark jobs whose client left (socket at EOF while
//           suspended, or the HTTP side gave up on them)
//   unlock: add the new jobs' choices to the engine; abort the choices of jobs that are
//           gone; run one engine step (callbacks stage stream chunks); answer jobs whose
//           choices all finished (whole JSON, or usage + [DONE]) and release their ids
//   lock:   publish staged bytes and answers, note which connections to resume
//   unlock: resume them; refresh the metrics' engine snapshot
//
// A client that leaves is thus aborted within one step, and its blocks are freed then.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "alloc.h"
#include "server_internal.h"

int buf_append(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = mx_realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

void buf_free(Buf *b) {
    mx_free(b->data);
    memset(b, 0, sizeof *b);
}

void job_unref(Server *s, Job *j) {
    if (--j->refs > 0) return;
    s->n_live--;
    pthread_cond_broadcast(&s->idle);
    api_request_free(&j->rq);
    buf_free(&j->out);
    buf_free(&j->staged);
    mx_free(j->choices);
    mx_free(j);
}

// Whether the peer closed a suspended connection's socket (EOF or an error; pending
// bytes of a next request mean it is still there).
static bool peer_closed(int fd) {
    if (fd < 0) return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// ---- answers -------------------------------------------------------------------------------

// Stream bytes made during a step go to staged (engine-owned) and reach out (under the
// lock) when the turn publishes them.
static void stage(Job *j, char *s) {
    if (s && buf_append(&j->staged, s, strlen(s)) == 0) {
        mx_free(s);
        return;
    }
    mx_free(s); // out of memory: the chunk is lost, the stream goes on
}

// An error answer: an SSE event once a stream has begun (sse), else a JSON body.
static char *error_body(bool sse, int status, const char *type, const char *code, const char *msg) {
    ApiError e;
    api_error_set(&e, status, type, NULL, code, "%s", msg);
    return sse ? api_stream_error(&e) : api_error_json(&e);
}

// ---- per-token callback (inside mx_engine_step or mx_engine_abort) --------------------------

static void on_token(void *user, const MxTokenEvent *ev) {
    Choice *c = user;
    Job *j = c->job;
    Server *s = j->srv;
    if (ev->token >= 0) {
        double now = server_now();
        if (c->n_tokens > 0) metrics_latency(&s->metrics, &s->metrics.itl, now - c->t_last);
        c->n_tokens++;
        c->t_last = now;
    }
    if (ev->finish != MX_FINISH_NONE) {
        c->done = true;
        j->n_done++;
    }
    if (!j->rq.stream || j->aborted || ev->finish == MX_FINISH_ABORT || ev->finish == MX_FINISH_ERROR) return;
    bool has_token = ev->token >= 0;
    const char *finish = ev->finish == MX_FINISH_STOP ? "stop" : ev->finish == MX_FINISH_LENGTH ? "length" : NULL;
    bool role = j->rq.kind == API_CHAT && !c->role_sent;
    // A token whose text is held (a partial character, a possible stop string) sends
    // nothing, unless its logprobs are wanted.
    if (ev->text_len == 0 && !finish && !role && !(j->rq.logprobs && has_token)) return;
    ApiToken tok = {.id = ev->token, .lp = ev->logprob, .top_ids = ev->top_ids, .top_lp = ev->top_logprobs, .n_top = ev->n_top};
    stage(j, api_stream_chunk(&j->meta, &j->rq, c->index, ev->text, ev->text_len, has_token ? &tok : NULL, finish, role,
                              &s->tt));
    c->role_sent = true;
}

// ---- admission and the end of a job ---------------------------------------------------------

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Adds every choice of j to the engine; on a refusal the ones added are released and j is
// answered with the error (400 for the request's fault).
static bool job_add(Server *s, Job *j, Answer *fail) {
    const ApiRequest *rq = &j->rq;
    uint64_t base = rq->has_seed ? rq->seed : splitmix(&s->seed_state);
    for (int k = 0; k < j->n_choices; k++) {
        Choice *c = &j->choices[k];
        const ApiPrompt *p = &rq->prompts[k / rq->n];
        MxRequestParams mp = mx_request_params_default();
        mp.max_tokens = rq->max_tokens;
        mp.temperature = rq->temperature;
        mp.top_p = rq->top_p;
        mp.top_k = rq->top_k;
        mp.seed = base + (uint64_t)(k % rq->n);
        mp.logprobs = rq->logprobs;
        mp.top_logprobs = rq->logprobs ? rq->top_logprobs : 0;
        mp.prompt_logprobs = rq->echo && rq->logprobs;
        mp.ignore_eos = rq->ignore_eos;
        mp.stop = (const char *const *)rq->stop;
        mp.n_stop = rq->n_stop;
        mp.on_token = on_token;
        mp.user = c;
        MxStatus st = mx_engine_add(s->engine, p->ids, p->n_ids, &mp, &c->id);
        if (st) {
            bool client = st == MX_ERR_ARG || st == MX_ERR_TOKEN || st == MX_ERR_CONTEXT || st == MX_ERR_KV_TOO_SMALL;
            char msg[200];
            snprintf(msg, sizeof msg, "the engine refused the request: %s", mx_status_text(st));
            for (int i = 0; i < k; i++) {
                mx_engine_abort(s->engine, j->choices[i].id);
                mx_engine_release(s->engine, j->choices[i].id);
                j->choices[i].id = 0;
            }
            if (st == MX_ERR_COMM) *fail = (Answer){error_body(false, 503, "server_error", "engine_failed", ENGINE_DEAD_MESSAGE), 503};
            else *fail = (Answer){error_body(false, client ? 400 : 500, client ? "invalid_request_error" : "server_error", NULL, msg),
                                  client ? 400 : 500};
            return false;
        }
    }
    return true;
}

// Builds j's final answer once every choice finished (or j was aborted), releasing its ids.
static Answer job_finish(Server *s, Job *j) {
    Answer a = {NULL, 200};
    MxOutput *outs = mx_calloc((size_t)j->n_choices, sizeof *outs);
    bool error = !outs;
    ApiUsage u = {0, 0};
    for (int i = 0; i < j->rq.n_prompts; i++) u.prompt_tokens += j->rq.prompts[i].n_ids;
    for (int k = 0; outs && k < j->n_choices; k++) {
        mx_engine_output(s->engine, j->choices[k].id, &outs[k]);
        error |= outs[k].finish == MX_FINISH_ERROR;
        if (!j->rq.echo_only) u.completion_tokens += outs[k].n_tokens;
    }
    if (j->engine_error && s->engine_dead) {
        a = (Answer){error_body(j->rq.stream, 503, "server_error", "engine_failed", ENGINE_DEAD_MESSAGE), 503};
    } else if (j->engine_error) {
        a = (Answer){error_body(j->rq.stream, 500, "server_error", NULL, "the engine failed to run a step"), 500};
    } else if (j->shutdown) {
        a = (Answer){error_body(j->rq.stream, 503, "server_error", "shutting_down", "the server shut down first"), 503};
    } else if (j->aborted) {
        a = (Answer){error_body(j->rq.stream, 499, "invalid_request_error", "client_closed", "the client closed the request"), 499};
    } else if (error) {
        a = (Answer){error_body(j->rq.stream, 500, "server_error", NULL, "the engine could not produce the output (out of memory)"), 500};
    } else if (j->rq.stream) {
        a.body = api_stream_end(&j->meta, &j->rq, &u);
    } else {
        a.body = api_response_json(&j->meta, &j->rq, outs, j->n_choices, &s->tt);
        if (!a.body) a = (Answer){error_body(j->rq.stream, 500, "server_error", NULL, "out of memory"), 500};
    }
    double now = server_now();
    if (!j->aborted && !error) {
        metrics_latency(&s->metrics, &s->metrics.e2e, now - j->t_arrive);
        pthread_mutex_lock(&s->metrics.lock);
        s->metrics.prompt_tokens += u.prompt_tokens;
        s->metrics.generation_tokens += u.completion_tokens;
        pthread_mutex_unlock(&s->metrics.lock);
    }
    if (j->aborted && !j->engine_error && !j->shutdown) {
        pthread_mutex_lock(&s->metrics.lock);
        s->metrics.aborted++;
        pthread_mutex_unlock(&s->metrics.lock);
    }
    for (int k = 0; k < j->n_choices; k++)
        if (j->choices[k].id) mx_engine_release(s->engine, j->choices[k].id);
    mx_free(outs);
    return a;
}

static void job_abort(Server *s, Job *j) {
    if (j->aborted) return;
    j->aborted = true;
    for (int k = 0; k < j->n_choices; k++)
        if (j->choices[k].id && !j->choices[k].done) mx_engine_abort(s->engine, j->choices[k].id);
}

// ---- the loop --------------------------------------------------------------------------------

void *server_engine_main(void *arg) {
    Server *s = arg;
    Publish *pub = s->pub;                  // [pub_cap]: a job appears at most twice per turn
    struct MHD_Connection **resume = s->resume; // [pub_cap]
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->incoming && !s->active && !s->stop_engine) {
            s->engine_has_work = false;
            s->last_progress = server_now();
            pthread_cond_broadcast(&s->idle);
            pthread_cond_wait(&s->wake, &s->lock);
        }
        if (s->stop_engine && !s->incoming && !s->active) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        Job *incoming = s->incoming;
        s->incoming = s->incoming_tail = NULL;
        bool abort_all = s->abort_all;
        for (Job *j = s->active; j; j = j->next_active) {
            if (!j->gone && j->suspended && peer_closed(j->fd)) j->gone = true;
            j->abort_wanted = j->gone || abort_all;
            j->shutdown = abort_all && !j->gone;
        }
        s->engine_has_work = true;
        pthread_mutex_unlock(&s->lock);

        int n_pub = 0;
        for (Job *j = s->active; j; j = j->next_active)
            if (j->abort_wanted) job_abort(s, j);
        for (Job *j = incoming, *next; j; j = next) {
            next = j->next;
            Answer fail;
            if (abort_all) {
                fail = (Answer){error_body(false, 503, "server_error", "shutting_down", "the server is shutting down"), 503};
            } else if (job_add(s, j, &fail)) {
                j->next_active = s->active; // the active list's order does not matter
                s->active = j;
                if (j->rq.stream) pub[n_pub++] = (Publish){j, {NULL, 200}, true, false}; // its stream may begin
                continue;
            }
            pub[n_pub++] = (Publish){j, fail, false, true};
        }

        if (s->active && mx_engine_has_work(s->engine)) {
            MxStatus st = mx_engine_step(s->engine);
            if (st) {
                // The engine keeps its requests consistent and a later step may succeed, but
                // these clients get an answer now rather than a hang.
                fprintf(stderr, "myrmex serve: engine step failed: %s\n", mx_last_error());
                if (st == MX_ERR_COMM) { // for good: answer 503 from now on; cmd_serve stops us
                    pthread_mutex_lock(&s->lock);
                    s->engine_dead = true;
                    pthread_mutex_unlock(&s->lock);
                }
                for (Job *j = s->active; j; j = j->next_active) {
                    j->engine_error = true;
                    job_abort(s, j);
                }
            }
            pthread_mutex_lock(&s->lock);
            s->engine_failing = st != MX_OK;
            s->last_progress = server_now();
            pthread_mutex_unlock(&s->lock);
        }

        // Time to first token, finished jobs, staged stream bytes.
        for (Job **link = &s->active; *link;) {
            Job *j = *link;
            for (int k = 0; !j->first_token_seen && k < j->n_choices; k++)
                if (j->choices[k].n_tokens > 0) {
                    j->first_token_seen = true;
                    metrics_latency(&s->metrics, &s->metrics.ttft, j->choices[k].t_last - j->t_arrive);
                }
            bool finished = j->n_done == j->n_choices;
            if (finished || j->staged.len) pub[n_pub++] = (Publish){j, {NULL, 200}, true, finished};
            if (finished) {
                pub[n_pub - 1].answer = job_finish(s, j);
                *link = j->next_active;
            } else {
                link = &j->next_active;
            }
        }

        // Publish: bytes and answers into each job under the lock, connections to resume.
        int n_resume = 0, pending = 0;
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < n_pub; i++) {
            Job *j = pub[i].job;
            if (j->staged.len && buf_append(&j->out, j->staged.data, j->staged.len) == 0) j->staged.len = 0;
            if (pub[i].answer.body) {
                buf_append(&j->out, pub[i].answer.body, strlen(pub[i].answer.body));
                mx_free(pub[i].answer.body);
                j->status = pub[i].answer.status;
                if (j->status == 499) metrics_status(&s->metrics, 499); // the HTTP side counts the others
            }
            j->admitted |= pub[i].admitted;
            if (j->suspended) {
                j->suspended = false;
                resume[n_resume++] = j->conn;
            }
            if (pub[i].final) {
                j->done = true;
                s->pending_seqs -= j->n_choices;
                s->n_jobs--;
                job_unref(s, j); // the engine's reference; the connection holds its own
            }
        }
        pending = s->pending_seqs;
        pthread_mutex_unlock(&s->lock);

        // The metrics first: a client that reads /metrics after its answer sees its blocks freed.
        MxEngineStats st;
        mx_engine_stats(s->engine, &st);
        metrics_engine(&s->metrics, &st);
        pthread_mutex_lock(&s->metrics.lock);
        s->metrics.pending = pending;
        pthread_mutex_unlock(&s->metrics.lock);
        for (int i = 0; i < n_resume; i++) MHD_resume_connection(resume[i]);
    }
    return NULL;
}
