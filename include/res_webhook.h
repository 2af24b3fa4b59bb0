/*
 * res_webhook.h — the one boundary between the C shim (asterisk/res_webhook_shim.c) and Rust.
 *
 * Direction C -> Rust: the rw_* functions below, implemented in Rust (src/asterisk/entry.rs),
 * each behind one panic guard. Strings passed in are borrowed for the duration of the call only.
 *
 * Direction Rust -> C: the struct rw_host of function pointers the shim hands to rw_load().
 * Rust never links against an Asterisk symbol directly, so the Rust core and its tests build
 * and run without Asterisk; only the cdylib links the shim.
 *
 * No Asterisk header is included here: bindgen runs on this file alone.
 */
#ifndef RES_WEBHOOK_H
#define RES_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

/* Log levels Rust may ask for; the shim maps them onto Asterisk's __LOG_* values. */
enum rw_log_level {
	RW_LOG_DEBUG = 0,
	RW_LOG_NOTICE = 1,
	RW_LOG_WARNING = 2,
	RW_LOG_ERROR = 3,
	RW_LOG_VERBOSE = 4,
};

/* What happened to a channel (see ASTERISK-NOTES: new, state Up, DEAD flag). CHANGED: its
 * linkedid or bridge changed, or it entered or left the Queue application — what the call model
 * needs to follow transfers, pickups and queues. */
enum rw_channel_change {
	RW_CHANNEL_NEW = 1,
	RW_CHANNEL_UP = 2,
	RW_CHANNEL_DEAD = 3,
	RW_CHANNEL_CHANGED = 4,
};

/* A channel snapshot, flattened: only what the call model reads for the change. Every field for
 * NEW; linkedid, uniqueid, appl, appl_data and bridge_id for UP and CHANGED; linkedid, uniqueid,
 * caller_name, hangup_source and hangup_cause for DEAD. A string not read is NULL, a number 0. */
struct rw_channel {
	int change; /* enum rw_channel_change */
	const char *linkedid;
	const char *uniqueid;
	const char *name;
	const char *caller_number;
	const char *caller_name;
	const char *dnid;
	const char *context;
	const char *exten;
	const char *appl;
	const char *accountcode;
	const char *hangup_source;
	const char *appl_data; /* the application's arguments (Queue: "sales,t,,,30") */
	const char *bridge_id; /* "" when not in a bridge */
	int hangup_cause;
	int64_t creation_sec;
	int64_t creation_usec;
};

/* A dial begin/end. caller_uniqueid is "" for originated legs. */
struct rw_dial {
	const char *caller_uniqueid;
	const char *peer_uniqueid;
	const char *peer_linkedid;
	const char *peer_name;
	const char *dialstring;
	const char *dialstatus;
};

/* A channel variable was set. */
struct rw_varset {
	const char *linkedid;
	const char *uniqueid;
	const char *name;
	const char *value;
};

/* Which channel event a handed-over message is (struct rw_message). */
enum rw_message_kind {
	RW_MESSAGE_CHANNEL = 1,
	RW_MESSAGE_DIAL = 2,
	RW_MESSAGE_VARSET = 3,
};

/* A handed-over message, read on the correlation thread (rw_host.message_read): kind says which
 * of channel, dial and varset is filled; sec/usec is when Asterisk published it. */
struct rw_message {
	int kind; /* enum rw_message_kind */
	int64_t sec;
	int64_t usec;
	struct rw_channel channel;
	struct rw_dial dial;
	struct rw_varset varset;
};

/* Services the host gives Rust. All function pointers are non-NULL. */
struct rw_host {
	/* Writes one line to Asterisk's logger. msg is a plain string, never a format. */
	void (*log)(int level, const char *file, int line, const char *func, const char *msg);
	/* Prints text on a CLI connection. */
	void (*cli_print)(int fd, const char *text);
	/* Click-to-call: rings Local/<from>@<context>; when it answers, continues at <to>@<context>.
	 * call_id becomes the first channel's uniqueid (so the call's linkedid). Returns 0 when the
	 * originate was queued, non-zero when Asterisk refused it. Does not wait for the call. */
	int (*originate)(const char *context, const char *from, const char *to, const char *caller_id,
		int timeout_ms, const char *call_id);
	/* Sends an AMI event (class system) named event; fields are "Key: Value\r\n" lines.
	 * Called from a delivery worker's thread, never from the call path. */
	void (*ami_event)(const char *event, const char *fields);
	/* A message rw_on_message took: flattens it into out (strings borrowed from the message,
	 * valid until message_release). change is what the hook passed with it. Returns 0, or -1
	 * for a message of another type. On the correlation thread. */
	int (*message_read)(void *message, int change, struct rw_message *out);
	/* Gives back the reference the hook took on a message. On any thread. */
	void (*message_release)(void *message);
};

/* Text Rust allocated for the shim (rw_ami_status, rw_metrics); free it with rw_free_text. */
void rw_free_text(char *text);
/* The AMI action WebhookStatus: one block of "Key: Value\r\n" lines per section, blocks
 * separated by '\x1e'. NULL when the module is not running. */
char *rw_ami_status(void);
/* Prometheus text exposition of the module's counters (res_prometheus' /metrics). NULL when
 * the module is not running. */
char *rw_metrics(void);

/* Module lifecycle. rw_load returns 0 on success; on failure the module declines to load.
 * spool_default is Asterisk's spool directory (e.g. /var/spool/asterisk); system_name is
 * asterisk.conf's systemname (empty: the host name is used), the calls' `node` field. */
int rw_load(const struct rw_host *host, const char *spool_default, const char *system_name);
/* Stops and joins every Rust thread. Safe to call once after rw_load. */
void rw_unload(void);

/* Asterisk is exiting without unloading modules (core stop now and SIGTERM run atexit handlers
 * only): does what rw_unload does — closes the hook, writes the caller history durably, stops
 * and joins every thread, spooling what is still queued. */
void rw_at_exit(void);

/* Configuration, fed section by section from ast_config (templates and #include resolved). */
void rw_config_begin(const char *file);
void rw_config_section(const char *name);
void rw_config_entry(const char *key, const char *value, const char *file, int line);
/* Applies what was fed since rw_config_begin. missing = the file does not exist. */
void rw_config_end(int missing);

/* After each rw_config_end: whether the shim should listen to channel events at all (a webhook
 * section is configured), and the channel variables worth copying (a template or the call model
 * reads them). rw_wanted_variables writes the names separated by '\n' and NUL-terminated into buf
 * when len is large enough, and returns the length of the list (without the NUL). */
int rw_wants_events(void);
int rw_wanted_variables(char *buf, size_t len);

/* Call-path hand-off, on the thread that publishes the channel event, often under the channel's
 * lock, from many threads at once: never block, never log. The shim filtered the message and took
 * one reference on it (messages are immutable once published); Rust always takes that reference
 * over, queues it, and has it read and released on the correlation thread, or releases it at
 * once when refused. change: enum rw_channel_change for a channel snapshot, 0 otherwise.
 * Returns 1 when queued, 0 when refused (queue full, or the module is stopping). */
int rw_on_message(void *message, int change);
/* Set(WEBHOOK(name)=value), on the channel's thread. Returns 0 when accepted. */
int rw_on_call_data(const char *linkedid, const char *name, const char *value);
/* Time the shim measured for one hook invocation that queued a message (filter, reference,
 * enqueue). */
void rw_record_hook_ns(uint64_t ns);

/* WEBHOOK_LOOKUP(section,number[,field]) on the channel's thread (the shim keeps the channel's
 * audio flowing with autoservice meanwhile). Writes the value (NUL-terminated, truncated to
 * len) into buf and FOUND / NOTFOUND / TIMEOUT / ERROR into status. Never waits longer than
 * the section's timeout. */
void rw_lookup(const char *section, const char *number, const char *field,
	char *buf, size_t len, char *status, size_t status_len);

/* An HTTP request to /webhook/<path> on Asterisk's HTTP server (click-to-call). params holds
 * the query string and, for POST, the form body, as n name/value pairs. Writes the JSON reply
 * into body (NUL-terminated) and returns the HTTP status code. */
int rw_http(const char *path, const char *method, const char *remote, int n,
	const char *const *names, const char *const *values, char *body, size_t body_len);

/* CLI: argv are the words after "webhook". Output goes through host->cli_print(fd, …).
 * Returns 0 when handled, -1 for a usage error. */
int rw_cli(int fd, int argc, const char *const *argv);

#endif
