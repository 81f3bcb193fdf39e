/* The fallback dance as a C MTA drives it: ask, attempt, report, ask again.
 * Build: see kits/c/README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tlsfallback.h"

/* Copies the string value of "key" in a flat JSON response into out (enough for this example;
 * a real MTA uses its JSON parser). */
static void field(const char *json, const char *key, char *out, size_t size) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *start = strstr(json, pattern);
    out[0] = '\0';
    if (start) {
        start += strlen(pattern);
        const char *end = strchr(start, '"');
        size_t length = end ? (size_t)(end - start) : 0;
        if (length >= size) length = size - 1;
        memcpy(out, start, length);
        out[length] = '\0';
    }
}

int main(void) {
    char *error = NULL;
    tlsfallback_engine *engine = tlsfallback_engine_new("[policy]\nstep_down_delay_secs = 0\n", &error);
    if (!engine) {
        fprintf(stderr, "tlsfallback: %s\n", error);
        tlsfallback_string_free(error);
        return 1;
    }
    printf("%s\n", tlsfallback_version());
    long now = (long)time(NULL);
    char request[1024], history[256] = "", tier[32], action[16];

    /* A new delivery to a peer we have never seen. */
    snprintf(request, sizeof request,
             "{\"peer\":\"mx.example.net\",\"now\":%ld,\"history\":null,\"last\":null}", now);
    char *response = tlsfallback_decide(engine, request);
    field(response, "tier", tier, sizeof tier);
    field(response, "history", history, sizeof history);
    printf("first: attempt %s\n", tier);
    tlsfallback_string_free(response);

    /* The peer answered the modern handshake with protocol_version: report it. */
    snprintf(request, sizeof request,
             "{\"peer\":\"mx.example.net\",\"now\":%ld,\"history\":\"%s\","
             "\"last\":{\"tier\":\"%s\",\"outcome\":\"tls-alert\",\"alert\":\"protocol-version\"}}",
             now, history, tier);
    response = tlsfallback_decide(engine, request);
    field(response, "action", action, sizeof action);
    field(response, "tier", tier, sizeof tier);
    printf("then: %s %s\n", action, tier);
    tlsfallback_string_free(response);

    tlsfallback_engine_free(engine);
    return strcmp(tier, "legacy-tls") == 0 ? 0 : 1;
}
