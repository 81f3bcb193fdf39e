/*
 * libtlsfallback: the tlsfallback TLS fallback policy engine for MTAs written in C.
 *
 * The engine is the tlsfallback:policy@0.2.0 WebAssembly component, embedded in and run by
 * wasmtime inside this library (nothing to install besides the library; no wasmtime headers needed). It does
 * no I/O: the MTA owns DNS, sockets, TLS, the clock and the storage of each peer's history.
 *
 * Requests and responses are the JSON lines of `tlsfallback decide` (README, "The CLI"):
 *
 *   request:  {"peer":"mx.example.net","now":1767225600,"history":null,"last":null}
 *             now: seconds since the Unix epoch; history: base64 of the blob the last
 *             response for this peer returned (null for a new peer); last: null when a
 *             delivery starts, else {"tier":"modern-tls","outcome":"tls-alert",
 *             "alert":"protocol-version"}; optional "context" and "policy" objects.
 *   response: {"peer":"mx.example.net","action":"attempt","tier":"modern-tls",
 *             "tls":{...},"delay_secs":0,"history":"AQEA...","reason":"strongest-tier",...}
 *             The MTA stores "history" for the peer and carries out "action":
 *             attempt (tier, tls, delay_secs), defer (retry_after_secs), bounce (status),
 *             done. A bad request gives {"error":"..."}.
 *
 * Thread safety: an engine is not thread-safe; use one per thread or a lock around it.
 * Creating one compiles the embedded component (about 40 ms): make engines once, at start.
 *
 * Link: cc mta.c $(pkg-config --cflags --libs tlsfallback)
 *   or: cc mta.c -I<repo>/kits/c/include -L<target>/release -ltlsfallback
 */
#ifndef TLSFALLBACK_H
#define TLSFALLBACK_H

#ifdef __cplusplus
extern "C" {
#endif

/* An engine: opaque. */
typedef struct tlsfallback_engine tlsfallback_engine;

/*
 * Creates an engine. policy_toml: the text of a tlsfallback policy file ([policy] and
 * [[destination]] tables), or NULL for the built-in defaults. Returns NULL on failure and,
 * if error is not NULL, sets *error to a message to free with tlsfallback_string_free.
 */
tlsfallback_engine *tlsfallback_engine_new(const char *policy_toml, char **error);

/*
 * Decides one request (a NUL-terminated JSON request, see above). Returns the JSON response,
 * NUL-terminated, without a newline; free it with tlsfallback_string_free. Returns NULL only
 * when memory runs out.
 */
char *tlsfallback_decide(tlsfallback_engine *engine, const char *request_json);

/* Frees a string returned by this library. NULL is allowed. */
void tlsfallback_string_free(char *text);

/* Frees an engine. NULL is allowed. */
void tlsfallback_engine_free(tlsfallback_engine *engine);

/*
 * The fleet's history merge, for MTAs that share peer histories across nodes (in Redis, say):
 * histories are base64 text, as in requests and responses.
 *
 * tlsfallback_adopt_shared: before a decision, the local history (NULL for a peer this node never
 * met) with the fleet's shared copy merged in: {"history":"..."}, or {"error":"..."} when a blob
 * cannot be read (decide with the local history as it is then).
 * tlsfallback_blob_to_share: after a change, the shared copy to write over the one last read
 * (NULL: none): {"history":"..."} (equal to the copy read: nothing to write), or {"error":"..."}
 * when the local history cannot be read.
 * Free each result with tlsfallback_string_free.
 */
char *tlsfallback_adopt_shared(const char *local_b64, const char *shared_b64);
char *tlsfallback_blob_to_share(const char *local_b64, const char *shared_b64);

/*
 * How the nodes of a fleet share histories in Redis, the protocol every tlsfallback host follows
 * (so C, Python, Node and `tlsfallback` nodes share one fleet): a peer's copy is the hash
 * key_prefix + peer + key_suffix with the fields version_field and blob_field (HMGET both); to
 * write, merge with tlsfallback_blob_to_share, and unless the result equals the copy read, run
 * compare_and_set (EVAL/EVALSHA, 1 key; ARGV: the version read or "", the blob, the TTL in ms)
 * and, when it answers {0, version, blob} (another node won), merge again with that copy, at
 * most compare_and_set_rounds times. Static: do not free.
 */
typedef struct tlsfallback_fleet_protocol {
    const char *key_prefix;
    const char *key_suffix;
    const char *version_field;
    const char *blob_field;
    const char *compare_and_set;
    unsigned int compare_and_set_rounds;
    unsigned long long shortest_key_ttl_secs;
} tlsfallback_fleet_protocol;

const tlsfallback_fleet_protocol *tlsfallback_fleet(void);

/* The library version and the interface it embeds, e.g. "0.1.0 tlsfallback:policy@0.2.0".
 * Static: do not free. */
const char *tlsfallback_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSFALLBACK_H */
