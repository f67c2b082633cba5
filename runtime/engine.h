// Internals of the engine that implements myrmex.h, for tests and tools in this tree.
#ifndef MYRMEX_ENGINE_H
#define MYRMEX_ENGINE_H

#include "model.h"
#include "tp_model.h"
#include "myrmex.h"
#include "sampler.h"
#include "scheduler.h"

// Aborts unless the KV pool and scheduler invariants hold (sched_check) and every
// request's state agrees with its sequence. Debug builds run it after every step.
void engine_check(const MxEngine *e);

// The loaded model and the scheduler (read-only use: plans, statistics, the block pool).
const Model *engine_model(const MxEngine *e);
const Scheduler *engine_scheduler(const MxEngine *e);

#endif
