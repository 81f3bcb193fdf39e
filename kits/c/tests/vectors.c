/* Runs every shared test vector (kits/vectors/decide.jsonl) through libtlsfallback and checks
 * that each response is byte for byte the one the native engine wrote.
 * Usage: vectors FILE; prints "N passed, N failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tlsfallback.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s kits/vectors/decide.jsonl\n", argv[0]);
        return 2;
    }
    FILE *file = fopen(argv[1], "r");
    if (!file) {
        perror(argv[1]);
        return 2;
    }
    char *error = NULL;
    tlsfallback_engine *engine = tlsfallback_engine_new(NULL, &error);
    if (!engine) {
        fprintf(stderr, "engine: %s\n", error);
        return 2;
    }
    /* Bad input is an error response, never a crash. */
    char *bad = tlsfallback_decide(engine, "{\"peer\":");
    int bad_ok = bad && strncmp(bad, "{\"error\":", 9) == 0;
    tlsfallback_string_free(bad);
    bad = tlsfallback_decide(engine, NULL);
    bad_ok = bad_ok && bad && strncmp(bad, "{\"error\":", 9) == 0;
    tlsfallback_string_free(bad);

    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    long passed = 0, failed = bad_ok ? 0 : 1;
    /* Each line is {"name":…,"request":{…},"response":{…}}, keys in that order. */
    while ((length = getline(&line, &capacity, file)) > 0) {
        if (line[length - 1] == '\n') line[--length] = '\0';
        char *request = strstr(line, ",\"request\":");
        char *response = strstr(line, ",\"response\":");
        if (!request || !response || line[length - 1] != '}') {
            fprintf(stderr, "malformed vector line: %.80s\n", line);
            failed++;
            continue;
        }
        request += strlen(",\"request\":");
        *response = '\0';
        response += strlen(",\"response\":");
        line[length - 1] = '\0';
        char *got = tlsfallback_decide(engine, request);
        if (got && strcmp(got, response) == 0) {
            passed++;
        } else {
            failed++;
            if (failed <= 5) fprintf(stderr, "mismatch for %s\n  want %s\n  got  %s\n", request, response, got);
        }
        tlsfallback_string_free(got);
    }
    free(line);
    fclose(file);
    tlsfallback_engine_free(engine);
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
