// myrmex: one binary, git-style subcommands. main() only dispatches; each command parses its
// own options (args.h) and returns its exit status (commands.h).
#include <stdio.h>
#include <string.h>

#include "../runtime/cluster.h"
#include "args.h"
#include "commands.h"

#ifndef MYRMEX_VERSION
#define MYRMEX_VERSION "0.1.0"
#endif

static int cmd_version(int argc, char **argv);

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary; // one line for `myrmex help`
} Command;

static const Command commands[] = {
    {"generate", cmd_generate, "prompt in, text out (a quick check of a model)"},
    {"make-model", cmd_make_model, "write a small random model in Hugging Face format"},
    {"inspect", cmd_inspect, "show a model directory's config, tensors and memory plan"},
    {"tokenize", cmd_tokenize, "text to token ids and back with a model's tokenizer"},
    {"bench", cmd_bench, "latency, throughput and energy per token over a batch x length sweep"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (completions, chat, streaming, metrics)"},
    {"bench-serve", cmd_bench_serve, "load generator for an OpenAI-compatible server (TTFT, ITL, goodput)"},
    {"version", cmd_version, "print the version and build options"},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof *commands))

static void print_commands(FILE *out) {
    fprintf(out, "usage: myrmex <command> [options]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nrun 'myrmex <command> --help' for a command's options\n");
}

static int cmd_version(int argc, char **argv) {
    const char *pos[1];
    int rc = args_parse("version", "myrmex version", NULL, 0, argc, argv, pos, 0, 0);
    if (rc != ARGS_OK) return rc == ARGS_HELP ? 0 : 2;
#ifdef MYRMEX_HAVE_CUDA
    const char *cuda = "on";
#else
    const char *cuda = "off";
#endif
#ifdef __clang__
    const char *cc = "clang";
#else
    const char *cc = "gcc";
#endif
#ifdef MYRMEX_HAVE_MPI
    const char *mpi = "on";
#else
    const char *mpi = "off";
#endif
#ifdef MYRMEX_HAVE_SERVE
    const char *serve = "on";
#else
    const char *serve = "off";
#endif
#ifdef MYRMEX_HAVE_BENCH_SERVE
    const char *bench_serve = "on";
#else
    const char *bench_serve = "off";
#endif
    printf("myrmex %s (CUDA backend %s, MPI %s, serve %s, bench-serve %s, built with %s %s)\n", MYRMEX_VERSION, cuda,
           mpi, serve, bench_serve, cc, __VERSION__);
    return 0;
}

static const Command *find_command(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int unknown_command(const char *name) {
    const char *names[N_COMMANDS];
    for (int i = 0; i < N_COMMANDS; i++) names[i] = commands[i].name;
    const char *near = args_closest(name, names, N_COMMANDS);
    if (near) fprintf(stderr, "myrmex: unknown command '%s' (did you mean '%s'?)\n", name, near);
    else fprintf(stderr, "myrmex: unknown command '%s'\n", name);
    fprintf(stderr, "run 'myrmex help' for the list of commands\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_commands(stderr); // no command is a usage error
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        if (argc > 2) { // `myrmex help CMD` = `myrmex CMD --help`
            const Command *c = find_command(argv[2]);
            if (!c) return unknown_command(argv[2]);
            char *help_argv[] = {(char *)c->name, "--help", NULL};
            return c->run(2, help_argv);
        }
        print_commands(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) name = "version";
    const Command *c = find_command(name);
    if (!c) return unknown_command(name);
    // Under mpirun every process runs the same command; the engine makes processes other
    // than 0 mirror process 0's steps (cluster.h), and they exit when it finishes.
    if (cluster_init() != MX_OK) {
        fprintf(stderr, "myrmex: %s\n", mx_last_error());
        return 1;
    }
    char *saved = argv[1];
    argv[1] = (char *)c->name;
    int rc = c->run(argc - 1, argv + 1);
    argv[1] = saved;
    cluster_finalize(rc != 0);
    return rc;
}
