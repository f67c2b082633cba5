// Named model shapes for dummy-weight runs (`bench --dummy`, the GPU benchmarks): the
// configs of well-known checkpoints, so their speed can be measured with nothing
// downloaded.
#ifndef MYRMEX_MODEL_PRESETS_H
#define MYRMEX_MODEL_PRESETS_H

#include "model_config.h"

// llama-2-7b, llama-2-13b, llama-2-70b, llama-3-8b, llama-3-70b, and small-100m (the
// 100m shape of `make-model`, quick on a CPU). MX_ERR_ARG for an unknown name.
MxStatus model_preset_config(const char *name, ModelConfig *out);

// "llama-2-7b, llama-2-13b, ..." for messages.
const char *model_preset_list(void);

#endif
