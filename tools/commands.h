// The myrmex subcommands. Each takes argv with argv[0] = the command name and returns the
// process exit status: 0 success, 1 runtime failure ("myrmex CMD: error: ..." printed),
// 2 usage error (printed by args_parse or args_usage_error).
#ifndef MYRMEX_COMMANDS_H
#define MYRMEX_COMMANDS_H

int cmd_generate(int argc, char **argv);   // cmd_generate.c: prompt in, text out
int cmd_make_model(int argc, char **argv); // cmd_make_model.c: a random model in HF form
int cmd_inspect(int argc, char **argv);    // cmd_inspect.c: config, tensors, memory plan
int cmd_tokenize(int argc, char **argv);   // cmd_tokenize.c: text to ids and back
int cmd_bench(int argc, char **argv);      // cmd_bench.c: latency, throughput, energy sweep
int cmd_bench_serve(int argc, char **argv); // cmd_bench_serve.c: load generator for a server
int cmd_serve(int argc, char **argv);      // cmd_serve.c: the OpenAI-compatible HTTP server

#endif
