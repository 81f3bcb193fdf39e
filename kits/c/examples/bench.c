/* The cost of one tlsfallback_decide call from C: JSON in, component decision, JSON out.
 * Usage: bench [N]; prints one line. Build as in kits/c/README.md (use the release library). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tlsfallback.h"

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    tlsfallback_engine *engine = tlsfallback_engine_new(NULL, NULL);
    if (!engine) return 1;
    const char *requests[] = {
        "{\"peer\":\"mx.example.net\",\"now\":1767225600,\"history\":null,\"last\":null}",
        "{\"peer\":\"mx.example.net\",\"now\":1767225600,\"history\":\"AQAAAAAAgPLWygYAAQIBAQ==\","
        "\"last\":{\"tier\":\"modern-tls\",\"outcome\":\"tls-alert\",\"alert\":\"protocol-version\"}}",
    };
    for (long i = 0; i < n / 10; i++) tlsfallback_string_free(tlsfallback_decide(engine, requests[i & 1]));
    double start = seconds();
    for (long i = 0; i < n; i++) tlsfallback_string_free(tlsfallback_decide(engine, requests[i & 1]));
    double elapsed = seconds() - start;
    printf("%ld decisions: %.2f us per decision (JSON in and out), %.0f decisions/s\n", n,
           elapsed / (double)n * 1e6, (double)n / elapsed);
    tlsfallback_engine_free(engine);
    return 0;
}
