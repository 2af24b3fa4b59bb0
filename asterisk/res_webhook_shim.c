/*
 * res_webhook_shim.c — everything macro-shaped that Rust cannot express: AST_MODULE_INFO,
 * the channel-event hook, CLI and dialplan function registration, config walking and logging.
 *
 * It reads Asterisk structures (whose layout changes between releases) only here, compiled
 * against the headers of the Asterisk that loads the module, flattens them into the plain
 * structs of include/res_webhook.h and hands them to Rust. See SAFETY.md for which thread
 * calls what.
 */

#include "asterisk.h"

#include <time.h>

#include "asterisk/module.h"
#include "asterisk/logger.h"
#include "asterisk/paths.h"
#include "asterisk/config.h"
#include "asterisk/cli.h"
#include "asterisk/pbx.h"
#include "asterisk/channel.h"
#include "asterisk/json.h"
#include "asterisk/stasis.h"
#include "asterisk/stasis_channels.h"
#include "asterisk/lock.h"
#include "asterisk/app.h"
#include "asterisk/http.h"
#include "asterisk/tcptls.h"
#include "asterisk/format_cache.h"
#include "asterisk/format_cap.h"
#include "asterisk/manager.h"
#include "asterisk/res_prometheus.h"

#include "res_webhook.h"

#define CONFIG_FILE "webhook.conf"
#define S(x) ((x) ? (x) : "")

/* Asterisk 22.11 / 23.5 / 20.21: a subscription whose callback runs on the publishing thread.
 * Declared weak so one binary also loads on 22.10 (the loader dlopens with RTLD_NOW): there the
 * symbol is NULL and the caching-topic path below is used instead. */
struct stasis_subscription *__stasis_subscribe_synchronous(struct stasis_topic *topic,
	stasis_subscription_cb callback, void *data, const char *file, int lineno, const char *func)
	__attribute__((weak));

/* The channel-event subscription: at most one of these is set, and only while a webhook section
 * is configured. Changed only on the loader / CLI thread (load, reload, unload). */
static struct stasis_subscription *sync_sub;     /* 22.11+: stasis_subscribe_synchronous */
static struct stasis_caching_topic *tap;         /* 13.0-22.10: a caching topic whose id_fn we are */
static struct stasis_cache *tap_cache;
static int path_logged;

/* The three message types, looked up once at load (each is a function call otherwise). */
static struct stasis_message_type *type_snapshot;
static struct stasis_message_type *type_dial;
static struct stasis_message_type *type_varset;

/* ---------------------------------------------------------------- host services for Rust */

static void host_log(int level, const char *file, int line, const char *func, const char *msg)
{
	int ast_level;

	switch (level) {
	case RW_LOG_DEBUG: ast_level = __LOG_DEBUG; break;
	case RW_LOG_NOTICE: ast_level = __LOG_NOTICE; break;
	case RW_LOG_WARNING: ast_level = __LOG_WARNING; break;
	case RW_LOG_ERROR: ast_level = __LOG_ERROR; break;
	default: ast_level = __LOG_VERBOSE; break;
	}
	ast_log(ast_level, file ? file : "res_webhook", line, func ? func : "rust", "%s\n", msg ? msg : "");
}

static void host_cli_print(int fd, const char *text)
{
	ast_cli(fd, "%s", text ? text : "");
}

static int host_originate(const char *context, const char *from, const char *to,
	const char *caller_id, int timeout_ms, const char *call_id)
{
	struct ast_format_cap *cap = ast_format_cap_alloc(AST_FORMAT_CAP_FLAG_DEFAULT);
	struct ast_assigned_ids ids = { .uniqueid = call_id, .uniqueid2 = NULL };
	char addr[AST_MAX_EXTENSION + AST_MAX_CONTEXT + 2];
	int reason = 0;
	int res;

	if (!cap) {
		return -1;
	}
	ast_format_cap_append(cap, ast_format_slin, 0);
	snprintf(addr, sizeof(addr), "%s@%s", from, context);
	res = ast_pbx_outgoing_exten("Local", cap, addr, timeout_ms, context, to, 1, &reason,
		AST_OUTGOING_NO_WAIT, S(caller_id), S(caller_id), NULL, NULL, NULL, 0,
		ast_strlen_zero(call_id) ? NULL : &ids);
	ao2_ref(cap, -1);
	return res;
}

static void host_ami_event(const char *event, const char *fields)
{
	manager_event(EVENT_FLAG_SYSTEM, S(event), "%s", S(fields));
}

static int host_message_read(void *m, int change, struct rw_message *out);
static void host_message_release(void *msg);

static const struct rw_host host = {
	.log = host_log,
	.cli_print = host_cli_print,
	.originate = host_originate,
	.ami_event = host_ami_event,
	.message_read = host_message_read,
	.message_release = host_message_release,
};

/* ---------------------------------------------------------------- call-path hooks */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* The hook takes one reference on the message and hands the pointer to Rust, which queues it;
 * the correlation thread reads it (host_message_read) and gives the reference back. Copying a
 * dozen strings out of snapshot segments that were built long ago, on a thread whose caches
 * something else has used since, was most of what the hook cost. */
static void hand_over(struct stasis_message *msg, uint64_t t0, int change)
{
	ao2_ref(msg, +1);
	if (rw_on_message(msg, change)) {
		rw_record_hook_ns(now_ns() - t0);
	}
}

static void snapshot_cb(struct stasis_message *msg, uint64_t t0)
{
	struct ast_channel_snapshot_update *update = stasis_message_data(msg);
	struct ast_channel_snapshot *old = update->old_snapshot;
	struct ast_channel_snapshot *new = update->new_snapshot;
	int change;

	if (!new || (new->base->tech_properties & AST_CHAN_TP_INTERNAL)) {
		return;
	}
	if (!old) {
		change = RW_CHANNEL_NEW;
	} else if (ast_test_flag(&new->flags, AST_FLAG_DEAD) && !ast_test_flag(&old->flags, AST_FLAG_DEAD)) {
		change = RW_CHANNEL_DEAD;
	} else if (new->state == AST_STATE_UP && old->state != AST_STATE_UP) {
		change = RW_CHANNEL_UP;
	} else if ((new->peer != old->peer && strcmp(new->peer->linkedid, old->peer->linkedid))
		|| (new->bridge != old->bridge && strcmp(new->bridge->id, old->bridge->id))
		|| (new->dialplan != old->dialplan && strcmp(new->dialplan->appl, old->dialplan->appl)
			&& (!strcmp(new->dialplan->appl, "Queue") || !strcmp(old->dialplan->appl, "Queue")))) {
		/* Bridges merge calls (linkedid), transfers and pickups move parties (bridge). An equal
		 * pointer is the same segment, so the same strings: Asterisk shares every segment it did
		 * not invalidate with the old snapshot (ast_channel_snapshot_create), so for most
		 * snapshots of a call the peer's and the bridge's strings, built long before, are not
		 * read at all. */
		change = RW_CHANNEL_CHANGED;
	} else {
		return;
	}
	hand_over(msg, t0, change);
}

static void dial_cb(struct stasis_message *msg, uint64_t t0)
{
	struct ast_channel_snapshot *peer = ast_multi_channel_blob_get_channel(stasis_message_data(msg), "peer");

	if (!peer || (peer->base->tech_properties & AST_CHAN_TP_INTERNAL)) {
		return;
	}
	hand_over(msg, t0, 0);
}

/* The channel variables worth copying (a template or the call model reads them): an immutable
 * set, replaced whole on load/reload by one atomic pointer store. Hooks read it with one atomic
 * load and never take a lock. A replaced set is kept (on a retired list) until unload, after the
 * subscription is joined, because a hook on another thread may still be reading it. */
struct wanted_vars {
	struct wanted_vars *retired_next;
	char *buf; /* the names, owned */
	size_t n;
	struct {
		uint32_t hash;
		size_t len;
		const char *name;
	} names[];
};

static struct wanted_vars *wanted;          /* read with __atomic_load_n (acquire) */
static struct wanted_vars *wanted_retired;  /* loader thread only */

static uint32_t fnv1a(const char *s, size_t *len)
{
	uint32_t h = 2166136261u;
	const char *p = s;

	for (; *p; p++) {
		h = (h ^ (unsigned char) *p) * 16777619u;
	}
	*len = p - s;
	return h;
}

static int variable_wanted(const char *name)
{
	const struct wanted_vars *w = __atomic_load_n(&wanted, __ATOMIC_ACQUIRE);
	size_t len, i;
	uint32_t h;

	if (!w || !w->n || !name) {
		return 0;
	}
	h = fnv1a(name, &len);
	for (i = 0; i < w->n; i++) {
		if (w->names[i].hash == h && w->names[i].len == len && !memcmp(w->names[i].name, name, len)) {
			return 1;
		}
	}
	return 0;
}

/* Builds the set from Rust's list (names separated by '\n') and swaps it in. Loader thread. */
static void update_wanted_vars(void)
{
	int need = rw_wanted_variables(NULL, 0);
	char *buf;
	struct wanted_vars *w, *old;
	size_t n = 0, i = 0;
	char *p, *save = NULL;

	if (need < 0) {
		return;
	}
	buf = ast_calloc(1, need + 1);
	if (!buf) {
		return;
	}
	rw_wanted_variables(buf, need + 1);
	for (p = buf; *p; p++) {
		n += (*p == '\n');
	}
	n += (need > 0);
	w = ast_calloc(1, sizeof(*w) + n * sizeof(w->names[0]));
	if (!w) {
		ast_free(buf);
		return;
	}
	for (p = strtok_r(buf, "\n", &save); p && i < n; p = strtok_r(NULL, "\n", &save)) {
		w->names[i].name = p;
		w->names[i].hash = fnv1a(p, &w->names[i].len);
		i++;
	}
	w->n = i;
	w->buf = buf;
	old = __atomic_exchange_n(&wanted, w, __ATOMIC_ACQ_REL);
	if (old) {
		old->retired_next = wanted_retired;
		wanted_retired = old;
	}
}

static void free_wanted_set(struct wanted_vars *w)
{
	ast_free(w->buf);
	ast_free(w);
}

/* Only after the subscription is joined: no hook can be reading any set any more. */
static void free_wanted_vars(void)
{
	struct wanted_vars *w = __atomic_exchange_n(&wanted, NULL, __ATOMIC_ACQ_REL);

	if (w) {
		free_wanted_set(w);
	}
	while ((w = wanted_retired)) {
		wanted_retired = w->retired_next;
		free_wanted_set(w);
	}
}

static void varset_cb(struct stasis_message *msg, uint64_t t0)
{
	struct ast_channel_blob *blob = stasis_message_data(msg);

	if (!blob->snapshot || (blob->snapshot->base->tech_properties & AST_CHAN_TP_INTERNAL)) {
		return; /* global variable */
	}
	if (variable_wanted(ast_json_string_get(ast_json_object_get(blob->blob, "variable")))) {
		hand_over(msg, t0, 0);
	}
}

/* ---------------------------------------------------------------- reading a handed-over message */

/* On the correlation thread, while Rust holds the reference the hook took: the message and
 * everything it points to are immutable. */
static int host_message_read(void *m, int change, struct rw_message *out)
{
	struct stasis_message *msg = m;
	struct stasis_message_type *type = stasis_message_type(msg);
	const struct timeval *tv = stasis_message_timestamp(msg);

	memset(out, 0, sizeof(*out));
	out->sec = tv->tv_sec;
	out->usec = tv->tv_usec;
	if (type == type_snapshot) {
		struct ast_channel_snapshot *new = ((struct ast_channel_snapshot_update *) stasis_message_data(msg))->new_snapshot;
		struct rw_channel *c = &out->channel;

		out->kind = RW_MESSAGE_CHANNEL;
		c->change = change;
		c->linkedid = S(new->peer->linkedid);
		c->uniqueid = S(new->base->uniqueid);
		/* Only what the call model reads for this change (the header says which): each
		 * string skipped is a cache miss saved, the snapshot having been published up to a
		 * batch window ago, and each segment skipped (caller, hangup, dialplan, bridge) more. */
		if (change == RW_CHANNEL_UP || change == RW_CHANNEL_CHANGED) {
			c->appl = S(new->dialplan->appl);
			c->appl_data = S(new->dialplan->data);
			c->bridge_id = S(new->bridge->id);
			return 0;
		}
		c->caller_name = S(new->caller->name);
		c->hangup_source = S(new->hangup->source);
		c->hangup_cause = new->hangup->cause;
		if (change == RW_CHANNEL_DEAD) {
			return 0;
		}
		c->name = S(new->base->name);
		c->caller_number = S(new->caller->number);
		c->dnid = S(new->caller->dnid);
		c->context = S(new->dialplan->context);
		c->exten = S(new->dialplan->exten);
		c->appl = S(new->dialplan->appl);
		c->accountcode = S(new->base->accountcode);
		c->appl_data = S(new->dialplan->data);
		c->bridge_id = S(new->bridge->id);
		c->creation_sec = new->base->creationtime.tv_sec;
		c->creation_usec = new->base->creationtime.tv_usec;
	} else if (type == type_dial) {
		struct ast_multi_channel_blob *blob = stasis_message_data(msg);
		struct ast_channel_snapshot *caller = ast_multi_channel_blob_get_channel(blob, "caller");
		struct ast_channel_snapshot *peer = ast_multi_channel_blob_get_channel(blob, "peer");
		struct ast_json *json = ast_multi_channel_blob_get_json(blob);
		struct rw_dial *d = &out->dial;

		out->kind = RW_MESSAGE_DIAL;
		d->caller_uniqueid = caller ? S(caller->base->uniqueid) : "";
		d->peer_uniqueid = S(peer->base->uniqueid);
		d->peer_linkedid = S(peer->peer->linkedid);
		d->peer_name = S(peer->base->name);
		d->dialstring = S(ast_json_string_get(ast_json_object_get(json, "dialstring")));
		d->dialstatus = S(ast_json_string_get(ast_json_object_get(json, "dialstatus")));
	} else if (type == type_varset) {
		struct ast_channel_blob *blob = stasis_message_data(msg);
		struct rw_varset *v = &out->varset;

		out->kind = RW_MESSAGE_VARSET;
		v->linkedid = S(blob->snapshot->peer->linkedid);
		v->uniqueid = S(blob->snapshot->base->uniqueid);
		v->name = S(ast_json_string_get(ast_json_object_get(blob->blob, "variable")));
		v->value = S(ast_json_string_get(ast_json_object_get(blob->blob, "value")));
	} else {
		return -1;
	}
	return 0;
}

static void host_message_release(void *msg)
{
	ao2_ref(msg, -1);
}

/* The hook, on the thread that publishes the message (a channel's, a bridge's, a PJSIP
 * serializer's, or whichever drops a channel's last reference), often holding the channel's
 * lock and always inside the topic's dispatch: copy, try_send, return. No blocking, no
 * ast_log, no channel lookups, no publishing. Many threads may be in here at once. */
static void on_message(struct stasis_message *msg)
{
	uint64_t t0 = now_ns();
	struct stasis_message_type *type = stasis_message_type(msg);

	if (type == type_snapshot) {
		snapshot_cb(msg, t0);
	} else if (type == type_dial) {
		dial_cb(msg, t0);
	} else if (type == type_varset) {
		varset_cb(msg, t0);
	}
}

/* 22.11+: the official synchronous subscription's callback. */
static void sync_cb(void *data, struct stasis_subscription *sub, struct stasis_message *msg)
{
	if (stasis_subscription_final_message(sub, msg)) {
		return;
	}
	on_message(msg);
}

/* 13.0-22.10: stasis_caching_topic_create() subscribes to the topic without a mailbox, and
 * caching_topic_exec (main/stasis_cache.c) calls the cache's id function on the publisher's
 * thread for every message the topic's filter lets through. Returning NULL caches nothing and
 * publishes nothing. This relies on internal behaviour unchanged since 13.0; the official
 * synchronous subscription is used whenever the running Asterisk has it. */
static const char *tap_id(struct stasis_message *msg)
{
	on_message(msg);
	return NULL;
}

static void unsubscribe(void)
{
	if (sync_sub) {
		sync_sub = stasis_unsubscribe_and_join(sync_sub);
	}
	if (tap) {
		tap = stasis_caching_unsubscribe_and_join(tap);
	}
	ao2_cleanup(tap_cache);
	tap_cache = NULL;
}

static int subscribe(void)
{
	struct stasis_topic *topic = ast_channel_topic_all();
	struct stasis_message_type *types[] = { type_snapshot, type_dial, type_varset };
	const char *path;
	size_t i;
	int res = 0;

	if (__stasis_subscribe_synchronous) {
		sync_sub = __stasis_subscribe_synchronous(topic, sync_cb, NULL, __FILE__, __LINE__, __PRETTY_FUNCTION__);
		if (!sync_sub) {
			return -1;
		}
		for (i = 0; i < ARRAY_LEN(types); i++) {
			res |= stasis_subscription_accept_message_type(sync_sub, types[i]);
		}
		res |= stasis_subscription_accept_message_type(sync_sub, stasis_subscription_change_type());
		res |= stasis_subscription_set_filter(sync_sub, STASIS_SUBSCRIPTION_FILTER_SELECTIVE);
		path = "stasis_subscribe_synchronous";
	} else {
		tap_cache = stasis_cache_create(tap_id);
		tap = tap_cache ? stasis_caching_topic_create(topic, tap_cache) : NULL;
		if (!tap) {
			unsubscribe();
			return -1;
		}
		for (i = 0; i < ARRAY_LEN(types); i++) {
			res |= stasis_caching_accept_message_type(tap, types[i]);
		}
		res |= stasis_caching_set_filter(tap, STASIS_SUBSCRIPTION_FILTER_SELECTIVE);
		path = "a caching topic (this Asterisk has no stasis_subscribe_synchronous)";
	}
	if (res) {
		unsubscribe();
		return -1;
	}
	if (!path_logged) {
		path_logged = 1;
		ast_log(LOG_NOTICE, "res_webhook: channel events are read on the publishing thread through %s\n", path);
	}
	return 0;
}

/* After each (re)load: subscribe when a webhook section is configured, not at all otherwise. */
static void update_subscription(void)
{
	int want;

	update_wanted_vars();
	want = rw_wants_events();
	if (want && !sync_sub && !tap) {
		if (subscribe()) {
			ast_log(LOG_ERROR, "res_webhook: cannot subscribe to channel events; no call webhooks are sent\n");
		}
	} else if (!want && (sync_sub || tap)) {
		unsubscribe();
		ast_log(LOG_NOTICE, "res_webhook: no webhook section: stopped listening to channel events\n");
	}
}

/* ---------------------------------------------------------------- configuration */

static void load_config(int reload)
{
	struct ast_flags flags = { 0 };
	struct ast_config *cfg = ast_config_load2(CONFIG_FILE, AST_MODULE, flags);
	struct ast_category *cat = NULL;

	rw_config_begin(CONFIG_FILE);
	if (!cfg || cfg == CONFIG_STATUS_FILEMISSING) {
		rw_config_end(1);
		return;
	}
	if (cfg == CONFIG_STATUS_FILEINVALID) {
		ast_log(LOG_ERROR, "%s has a syntax error; %s\n", CONFIG_FILE,
			reload ? "keeping the configuration in force" : "no sections loaded");
		if (!reload) {
			rw_config_end(1);
		}
		return;
	}
	while ((cat = ast_category_browse_filtered(cfg, NULL, cat, NULL))) {
		struct ast_variable *v;

		if (ast_category_is_template(cat)) {
			continue;
		}
		rw_config_section(ast_category_get_name(cat));
		for (v = ast_category_first(cat); v; v = v->next) {
			rw_config_entry(S(v->name), S(v->value), S(v->file), v->lineno);
		}
	}
	ast_config_destroy(cfg);
	rw_config_end(0);
}

/* ---------------------------------------------------------------- dialplan functions */

static int webhook_write(struct ast_channel *chan, const char *cmd, char *data, const char *value)
{
	char linkedid[AST_MAX_UNIQUEID];

	if (!chan) {
		ast_log(LOG_WARNING, "WEBHOOK(%s) needs a channel\n", S(data));
		return -1;
	}
	if (ast_strlen_zero(data)) {
		ast_log(LOG_WARNING, "WEBHOOK() needs a name: Set(WEBHOOK(NAME)=value)\n");
		return -1;
	}
	ast_channel_lock(chan);
	ast_copy_string(linkedid, ast_channel_linkedid(chan), sizeof(linkedid));
	ast_channel_unlock(chan);
	return rw_on_call_data(linkedid, data, S(value)) ? -1 : 0;
}

static struct ast_custom_function webhook_function = {
	.name = "WEBHOOK",
	.synopsis = "Attach a value to the current call's webhooks",
	.syntax = "WEBHOOK(name)",
	.desc = "Write-only. Set(WEBHOOK(NAME)=value) makes ${NAME} available to every webhook\n"
		"of the current call (all channels sharing its linkedid), e.g. for the end event.\n"
		"Values set this way win over a channel variable of the same name.\n",
	.docsrc = AST_STATIC_DOC,
	.write = webhook_write,
};

static int lookup_read(struct ast_channel *chan, const char *cmd, char *data, char *buf, size_t len)
{
	char status[16] = "ERROR";
	AST_DECLARE_APP_ARGS(args,
		AST_APP_ARG(section);
		AST_APP_ARG(number);
		AST_APP_ARG(field);
	);

	buf[0] = '\0';
	AST_STANDARD_APP_ARGS(args, data);
	if (ast_strlen_zero(args.section)) {
		ast_log(LOG_WARNING, "WEBHOOK_LOOKUP(section,number[,field]) needs a section\n");
	} else {
		if (chan) {
			ast_autoservice_start(chan);
		}
		rw_lookup(args.section, S(args.number), S(args.field), buf, len, status, sizeof(status));
		if (chan) {
			ast_autoservice_stop(chan);
		}
	}
	if (chan) {
		pbx_builtin_setvar_helper(chan, "WEBHOOK_LOOKUP_STATUS", status);
	}
	return 0;
}

static struct ast_custom_function lookup_function = {
	.name = "WEBHOOK_LOOKUP",
	.synopsis = "Ask a CRM about a phone number (contact name, responsible agent)",
	.syntax = "WEBHOOK_LOOKUP(section,number[,field])",
	.arguments = "section: a [section] of webhook.conf with type = lookup\n"
		"number: the phone number to ask about, usually ${CALLERID(num)}\n"
		"field: the answer's field to return (default contact_name), e.g. responsible\n",
	.desc = "Sends the section's request (its url, method, format and params, with ${number})\n"
		"and returns one field of the CRM's JSON answer. Strict JSON and the lenient form\n"
		"{ contact_name: 'Name', responsible: '100' } are accepted. Answers are cached for the\n"
		"section's 'cache' seconds, so several reads in one call cost one request.\n"
		"The dialplan never waits longer than the section's 'timeout' (audio keeps flowing).\n"
		"Sets WEBHOOK_LOOKUP_STATUS to FOUND, NOTFOUND, TIMEOUT or ERROR.\n"
		"Values are cleaned for dialplan use: control characters and , & | ( ) ; $ { } [ ] and\n"
		"quotes are removed, so a CRM can never change a Dial string.\n"
		"Example:\n"
		" same => n,Set(CALLERID(name)=${WEBHOOK_LOOKUP(crm-contact,${CALLERID(num)},contact_name)})\n"
		" same => n,GotoIf($[\"${WEBHOOK_LOOKUP_STATUS}\" != \"FOUND\"]?queue)\n"
		" same => n,Dial(PJSIP/${WEBHOOK_LOOKUP(crm-contact,${CALLERID(num)},responsible)},20)\n",
	.docsrc = AST_STATIC_DOC,
	.read = lookup_read,
};

/* ---------------------------------------------------------------- click-to-call HTTP */

#define HTTP_MAX_PARAMS 64

static int http_callback(struct ast_tcptls_session_instance *ser, const struct ast_http_uri *urih,
	const char *uri, enum ast_http_method method, struct ast_variable *get_params,
	struct ast_variable *headers)
{
	const char *names[HTTP_MAX_PARAMS];
	const char *values[HTTP_MAX_PARAMS];
	struct ast_variable *post = NULL;
	struct ast_variable *v;
	char body[1024] = "";
	int n = 0;
	int code;
	struct ast_str *out;
	struct ast_str *hdr;

	if (method != AST_HTTP_GET && method != AST_HTTP_POST) {
		ast_http_error(ser, 405, "Method Not Allowed", "Use GET or POST");
		return 0;
	}
	for (v = get_params; v && n < HTTP_MAX_PARAMS; v = v->next, n++) {
		names[n] = v->name;
		values[n] = v->value;
	}
	if (method == AST_HTTP_POST) {
		post = ast_http_get_post_vars(ser, headers);
		for (v = post; v && n < HTTP_MAX_PARAMS; v = v->next, n++) {
			names[n] = v->name;
			values[n] = v->value;
		}
	}
	code = rw_http(S(uri), method == AST_HTTP_POST ? "POST" : "GET",
		ast_sockaddr_stringify(&ser->remote_address), n, names, values, body, sizeof(body));
	ast_variables_destroy(post);

	out = ast_str_create(sizeof(body));
	hdr = ast_str_create(64);
	if (!out || !hdr) {
		ast_free(out);
		ast_free(hdr);
		ast_http_error(ser, 500, "Server Error", "Out of memory");
		return 0;
	}
	ast_str_set(&out, 0, "%s", body);
	ast_str_set(&hdr, 0, "Content-Type: application/json\r\n");
	ast_http_send(ser, method, code, code == 200 ? "OK" : "Error", hdr, out, 0, 0);
	return 0;
}

static struct ast_http_uri http_uri = {
	.description = "res_webhook click-to-call",
	.uri = "webhook",
	.callback = http_callback,
	.has_subtree = 1,
	.data = NULL,
	.key = __FILE__,
};

/* ---------------------------------------------------------------- CLI */

static char *cli_dispatch(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a,
	const char *command, const char *usage)
{
	if (cmd == CLI_INIT) {
		e->command = (char *) command;
		e->usage = (char *) usage;
		return NULL;
	}
	if (cmd == CLI_GENERATE) {
		return NULL;
	}
	/* argv[0] is "webhook" */
	return rw_cli(a->fd, a->argc - 1, (const char *const *) a->argv + 1) ? CLI_SHOWUSAGE : CLI_SUCCESS;
}

static char *cli_status(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_dispatch(e, cmd, a, "webhook show status",
		"Usage: webhook show status\n"
		"       Per section: queued, in flight, delivered, retrying, dead, spooled,\n"
		"       last error and latency; and the call-path hook cost.\n");
}

static char *cli_errors(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_dispatch(e, cmd, a, "webhook show errors",
		"Usage: webhook show errors [section]\n"
		"       The last failed delivery attempts: time, section, call, event, HTTP status or error.\n");
}

static char *cli_test(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_dispatch(e, cmd, a, "webhook test",
		"Usage: webhook test <section> [start|answer|end]\n"
		"       Sends a synthetic event to one section now and prints what happened.\n");
}

static char *cli_replay(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_dispatch(e, cmd, a, "webhook replay",
		"Usage: webhook replay <section|all>\n"
		"       Re-sends dead-lettered deliveries.\n");
}

static char *cli_calls(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_dispatch(e, cmd, a, "webhook show calls",
		"Usage: webhook show calls\n"
		"       The calls in progress as res_webhook sees them: call id, direction, caller,\n"
		"       called, extension, state (ringing, queued, answered) and age.\n");
}

static char *cli_section(struct ast_cli_entry *e, int cmd, struct ast_cli_args *a)
{
	return cli_dispatch(e, cmd, a, "webhook show section",
		"Usage: webhook show section <name>\n"
		"       One section as loaded: preset expanded, defaults filled in, secrets hidden.\n");
}

static struct ast_cli_entry cli_entries[] = {
	AST_CLI_DEFINE(cli_status, "Show webhook delivery status"),
	AST_CLI_DEFINE(cli_calls, "Show calls in progress"),
	AST_CLI_DEFINE(cli_section, "Show a webhook.conf section as loaded"),
	AST_CLI_DEFINE(cli_errors, "Show failed webhook deliveries"),
	AST_CLI_DEFINE(cli_test, "Send a synthetic webhook"),
	AST_CLI_DEFINE(cli_replay, "Re-send dead-lettered webhooks"),
};

/* ---------------------------------------------------------------- AMI */

/* Action WebhookStatus: a list of WebhookSection events, then WebhookStatusComplete. */
static int manager_webhook_status(struct mansession *s, const struct message *m)
{
	const char *id = astman_get_header(m, "ActionID");
	char idtext[256] = "";
	char *text = rw_ami_status();
	char *block, *save = NULL;
	int count = 0;

	if (!ast_strlen_zero(id)) {
		snprintf(idtext, sizeof(idtext), "ActionID: %s\r\n", id);
	}
	astman_send_listack(s, m, "Webhook section status will follow", "start");
	for (block = text ? strtok_r(text, "\x1e", &save) : NULL; block; block = strtok_r(NULL, "\x1e", &save)) {
		astman_append(s, "Event: WebhookSection\r\n%s%s\r\n", idtext, block);
		count++;
	}
	astman_send_list_complete_start(s, m, "WebhookStatusComplete", count);
	astman_send_list_complete_end(s);
	rw_free_text(text);
	return 0;
}

/* ---------------------------------------------------------------- Prometheus */

/* res_prometheus is optional: weak references, resolved only when it is loaded (it is listed
 * in .optional_modules, so the loader loads it first when it is there). */
int prometheus_callback_register(struct prometheus_callback *callback) __attribute__((weak));
void prometheus_callback_unregister(struct prometheus_callback *callback) __attribute__((weak));

static void metrics_cb(struct ast_str **output)
{
	char *text = rw_metrics();

	if (text) {
		ast_str_append(output, 0, "%s", text);
		rw_free_text(text);
	}
}

static struct prometheus_callback metrics_callback = {
	.name = "res_webhook",
	.callback_fn = metrics_cb,
};

static int metrics_registered;

/* ---------------------------------------------------------------- lifecycle */

static int unload_module(void)
{
	/* Only reached at Asterisk shutdown: load_module took a shutdown reference, because Rust's
	 * thread-local destructors keep the library mapped after dlclose (ASTERISK-NOTES). */
	ast_unregister_atexit(rw_at_exit);
	/* Joined before Rust stops: after this no hook runs and none is running. */
	unsubscribe();
	free_wanted_vars();
	ast_http_uri_unlink(&http_uri);
	ast_cli_unregister_multiple(cli_entries, ARRAY_LEN(cli_entries));
	ast_manager_unregister("WebhookStatus");
	if (metrics_registered && prometheus_callback_unregister) {
		prometheus_callback_unregister(&metrics_callback);
	}
	ast_custom_function_unregister(&webhook_function);
	ast_custom_function_unregister(&lookup_function);
	rw_unload();
	return 0;
}

static int load_module(void)
{
	if (rw_load(&host, ast_config_AST_SPOOL_DIR, ast_config_AST_SYSTEM_NAME)) {
		return AST_MODULE_LOAD_DECLINE;
	}
	type_snapshot = ast_channel_snapshot_type();
	type_dial = ast_channel_dial_type();
	type_varset = ast_channel_varset_type();
	load_config(0);
	update_subscription();
	ast_custom_function_register(&webhook_function);
	ast_custom_function_register(&lookup_function);
	ast_http_uri_link(&http_uri);
	ast_cli_register_multiple(cli_entries, ARRAY_LEN(cli_entries));
	ast_manager_register("WebhookStatus", EVENT_FLAG_SYSTEM | EVENT_FLAG_REPORTING, manager_webhook_status,
		"Show webhook delivery status per section");
	if (prometheus_callback_register && !prometheus_callback_register(&metrics_callback)) {
		metrics_registered = 1;
		ast_log(LOG_NOTICE, "res_webhook metrics are served by res_prometheus\n");
	}

	/* core stop now exits without unloading modules; atexit handlers still run. */
	ast_register_atexit(rw_at_exit);
	ast_module_shutdown_ref(AST_MODULE_SELF);
	return AST_MODULE_LOAD_SUCCESS;
}

static int reload_module(void)
{
	load_config(1);
	update_subscription();
	return AST_MODULE_LOAD_SUCCESS;
}

AST_MODULE_INFO(ASTERISK_GPL_KEY, AST_MODFLAG_LOAD_ORDER, "Call webhooks, CRM lookup and click-to-call",
	.support_level = AST_MODULE_SUPPORT_EXTENDED,
	.load = load_module,
	.unload = unload_module,
	.reload = reload_module,
	.load_pri = AST_MODPRI_DEFAULT,
	.optional_modules = "res_prometheus",
);
