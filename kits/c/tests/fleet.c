/*
 * Two C nodes of one fleet, sharing through a real redis-server with hiredis, as a C MTA would:
 * node A learns that a peer only speaks TLS 1.0 and shares it; node B's first delivery to the
 * peer starts at legacy-tls. Then a forged shared copy is refused, not trusted.
 *
 * Usage: fleet PORT. Prints "ok" and exits 0, or says what failed and exits 1.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tlsfallback.h"

#define PEER "mx.legacy.example"
#define NOW 1767225600LL

static int failures = 0;

static void check(int ok, const char *what, const char *detail) {
    if (!ok) {
        fprintf(stderr, "FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
        failures++;
    }
}

/* The value of "key":"..." in a flat JSON object, malloc'd; NULL when absent. */
static char *json_string(const char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *start = strstr(json, pattern);
    if (!start) return NULL;
    start += strlen(pattern);
    const char *end = strchr(start, '"');
    if (!end) return NULL;
    return strndup(start, (size_t)(end - start));
}

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const unsigned char *bytes, size_t len) {
    char *out = malloc(4 * ((len + 2) / 3) + 1), *p = out;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)bytes[i] << 16 | (i + 1 < len ? (unsigned)bytes[i + 1] << 8 : 0)
                     | (i + 2 < len ? bytes[i + 2] : 0);
        *p++ = ALPHABET[v >> 18 & 63];
        *p++ = ALPHABET[v >> 12 & 63];
        *p++ = i + 1 < len ? ALPHABET[v >> 6 & 63] : '=';
        *p++ = i + 2 < len ? ALPHABET[v & 63] : '=';
    }
    *p = 0;
    return out;
}

static size_t base64_decode(const char *text, unsigned char *out) {
    size_t n = 0, bits = 0;
    unsigned v = 0;
    for (; *text && *text != '='; text++) {
        const char *at = strchr(ALPHABET, *text);
        if (!at) break;
        v = v << 6 | (unsigned)(at - ALPHABET);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(v >> bits & 0xff);
        }
    }
    return n;
}

/* One decision; returns the response (free it). */
static char *decide(tlsfallback_engine *engine, const char *history, const char *last) {
    char request[1024];
    char history_json[256];
    if (history) snprintf(history_json, sizeof history_json, "\"%s\"", history);
    else strcpy(history_json, "null");
    snprintf(request, sizeof request,
             "{\"peer\":\"" PEER "\",\"now\":%lld,\"history\":%s,\"last\":%s}", NOW,
             history_json, last ? last : "null");
    return tlsfallback_decide(engine, request);
}

/* One step of a dance: decides with *history, which becomes the new history; the response must
 * contain `expect`. */
static void step(tlsfallback_engine *engine, char **history, const char *last, const char *expect,
                 const char *what) {
    char *r = decide(engine, *history, last);
    free(*history);
    *history = json_string(r, "history");
    check(strstr(r, expect) != NULL, what, r);
    tlsfallback_string_free(r);
}

static char *key_of(const tlsfallback_fleet_protocol *fleet) {
    size_t len = strlen(fleet->key_prefix) + strlen(PEER) + strlen(fleet->key_suffix) + 1;
    char *key = malloc(len);
    snprintf(key, len, "%s%s%s", fleet->key_prefix, PEER, fleet->key_suffix);
    return key;
}

/* Merges a node's history (base64) into the shared copy with compare-and-set. */
static int publish(redisContext *redis, const tlsfallback_fleet_protocol *fleet,
                   const char *local) {
    char *key = key_of(fleet);
    int written = -1;
    redisReply *copy = redisCommand(redis, "HMGET %s %s %s", key, fleet->version_field,
                                    fleet->blob_field);
    for (unsigned round = 0; round < fleet->compare_and_set_rounds && copy; round++) {
        /* {version, blob} read by HMGET, or {applied, version, blob} from the script. */
        size_t at = copy->elements == 3 ? 1 : 0;
        int have = copy->type == REDIS_REPLY_ARRAY && copy->element[at]->type == REDIS_REPLY_STRING
               && copy->element[at]->len > 0;
        char *shared = have ? base64_encode((unsigned char *)copy->element[at + 1]->str,
                                            copy->element[at + 1]->len)
                            : NULL;
        char *merged_json = tlsfallback_blob_to_share(local, shared);
        char *merged = json_string(merged_json, "history");
        tlsfallback_string_free(merged_json);
        int unchanged = merged && shared && strcmp(merged, shared) == 0;
        free(shared);
        if (!merged || unchanged) {
            free(merged);
            written = merged ? 0 : -1;
            break;
        }
        unsigned char blob[128];
        size_t blob_len = base64_decode(merged, blob);
        free(merged);
        char ttl[32];
        snprintf(ttl, sizeof ttl, "%llu", fleet->shortest_key_ttl_secs * 1000ULL);
        const char *expected = have ? copy->element[at]->str : "";
        const char *argv[] = {"EVAL", fleet->compare_and_set, "1", key, expected,
                              (const char *)blob, ttl};
        size_t lens[] = {4, strlen(fleet->compare_and_set), 1, strlen(key), strlen(expected),
                         blob_len, strlen(ttl)};
        redisReply *answer = redisCommandArgv(redis, 7, argv, lens);
        freeReplyObject(copy);
        copy = answer;
        if (answer && answer->type == REDIS_REPLY_ARRAY && answer->elements == 3
            && answer->element[0]->integer == 1) {
            written = 1;
            break;
        }
    }
    if (copy) freeReplyObject(copy);
    free(key);
    return written;
}

/* The history node B decides with: its own (none) with the shared copy merged in. */
static char *adopt(redisContext *redis, const tlsfallback_fleet_protocol *fleet,
                   const char *local, char **error) {
    char *key = key_of(fleet);
    redisReply *copy = redisCommand(redis, "HMGET %s %s %s", key, fleet->version_field,
                                    fleet->blob_field);
    free(key);
    char *history = NULL;
    if (copy && copy->type == REDIS_REPLY_ARRAY && copy->element[1]->type == REDIS_REPLY_STRING) {
        char *shared = base64_encode((unsigned char *)copy->element[1]->str,
                                     copy->element[1]->len);
        char *answer = tlsfallback_adopt_shared(local, shared);
        history = json_string(answer, "history");
        if (!history && error) *error = json_string(answer, "error");
        tlsfallback_string_free(answer);
        free(shared);
    }
    if (copy) freeReplyObject(copy);
    return history;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fleet PORT\n");
        return 2;
    }
    const tlsfallback_fleet_protocol *fleet = tlsfallback_fleet();
    redisContext *redis = redisConnect("127.0.0.1", atoi(argv[1]));
    if (!redis || redis->err) {
        fprintf(stderr, "cannot connect to redis-server: %s\n", redis ? redis->errstr : "?");
        return 1;
    }
    char *error = NULL;
    tlsfallback_engine *node_a = tlsfallback_engine_new(NULL, &error);
    tlsfallback_engine *node_b = tlsfallback_engine_new(NULL, &error);
    if (!node_a || !node_b) {
        fprintf(stderr, "engine: %s\n", error);
        return 1;
    }

    /* Node A: modern-tls, a protocol_version alert, legacy-tls, delivered over TLS 1.0. */
    char *history = NULL;
    step(node_a, &history, NULL, "\"tier\":\"modern-tls\"", "node A starts at modern-tls");
    step(node_a, &history,
         "{\"tier\":\"modern-tls\",\"outcome\":\"tls-alert\",\"alert\":\"protocol-version\"}",
         "\"tier\":\"legacy-tls\"", "node A steps down to legacy-tls");
    step(node_a, &history,
         "{\"tier\":\"legacy-tls\",\"outcome\":\"success\",\"version\":\"TLSv1\"}",
         "\"action\":\"done\"", "node A delivers");
    check(publish(redis, fleet, history) == 1, "node A writes the shared copy", NULL);
    check(publish(redis, fleet, history) == 0, "node A's second write changes nothing", NULL);
    free(history);

    /* Node B has never met the peer: the fleet's copy makes it start at legacy-tls. */
    char *adopted = adopt(redis, fleet, NULL, NULL);
    check(adopted != NULL, "node B adopts the shared copy", NULL);
    char *r = decide(node_b, adopted, NULL);
    check(strstr(r, "\"tier\":\"legacy-tls\"") != NULL, "node B starts at legacy-tls", r);
    check(strstr(r, "\"reason\":\"remembered-tier\"") != NULL, "node B remembers the tier", r);
    tlsfallback_string_free(r);
    free(adopted);

    /* A forged shared copy: adopted by nobody, and named. */
    char *key = key_of(fleet);
    redisReply *forged = redisCommand(redis, "HSET %s %s 9 %s %b", key, fleet->version_field,
                                      fleet->blob_field, "\x01\xff\xff", (size_t)3);
    if (forged) freeReplyObject(forged);
    free(key);
    char *why = NULL;
    adopted = adopt(redis, fleet, NULL, &why);
    check(adopted == NULL, "a forged copy is not adopted", adopted);
    check(why != NULL, "the forged copy's error is named", NULL);
    free(adopted);
    free(why);

    /* Bad input is an error, never a crash. */
    r = tlsfallback_blob_to_share(NULL, NULL);
    check(strstr(r, "\"error\"") != NULL, "a NULL local history is an error", r);
    tlsfallback_string_free(r);
    r = tlsfallback_adopt_shared(NULL, "not base64!");
    check(strstr(r, "not valid base64") != NULL, "bad base64 is an error", r);
    tlsfallback_string_free(r);

    tlsfallback_engine_free(node_a);
    tlsfallback_engine_free(node_b);
    redisFree(redis);
    if (failures) return 1;
    puts("ok");
    return 0;
}
