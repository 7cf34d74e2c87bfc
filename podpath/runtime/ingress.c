/*
 * podpath-ingress: ingress-nginx's controller process, for one controller pod of the netns lab.
 *
 *   podpath-ingress --lease PATH --identity POD [--duration 3] [--retry 0.75] -- NGINX ARGV...
 *
 * In ingress-nginx the controller's process (/nginx-ingress-controller) starts the nginx
 * master as its own child, in a process group of its own so that signals meant for the
 * controller do not reach nginx, and takes part in the leader election (client-go's
 * leaderelection, on the Lease named by --election-id) from that same process. So does this
 * program, the first process of the pod's `controller` container:
 *
 * - It starts NGINX ARGV (nginx with the pod's configuration and `daemon off`) as its child,
 *   with no signal blocked and every signal's default action.
 * - Every retry period, while that nginx lives, it tries to take or renew the lease at PATH:
 *   the lease lives in the controller, so a controller whose nginx is gone, or that is
 *   frozen, stops renewing it, and another controller takes it once its duration has passed.
 * - When nginx exits without being asked, the controller says so and exits too, with
 *   nginx's failure (its exit code, 128 + the signal that killed it, or 1 if it exited 0 on
 *   its own). It does not give the lease up: a controller that fails keeps it until the
 *   duration runs out, as a controller that crashes does. (ingress-nginx itself logs that
 *   the nginx master died and lets the liveness probe have the kubelet restart the
 *   container; the netns lab has no liveness probe, so the container ends at once.)
 * - On SIGTERM (or SIGINT) it sends nginx QUIT (a graceful stop: nginx finishes the requests
 *   it has), releases the lease so that another controller takes it within a retry period,
 *   waits for nginx to exit and exits 0.
 *
 * As the first process of its PID namespace it also reaps the processes that nginx leaves
 * behind (its workers, if the master is killed before them).
 *
 * The lease. ingress-nginx's controllers elect their leader with a coordination.k8s.io Lease;
 * in the netns lab the lease is a JSON object in a file under the lab's folder, which stands
 * where the API server would: holderIdentity, acquireTime, renewTime (seconds since 1970),
 * leaseDurationSeconds and leaseTransitions, the fields of a Lease's spec, written as
 * Python's json.dumps(sort_keys=True) writes them, because podpath.runtime.lease.read is how
 * `podpath status` and the verifier read it. A controller rewrites the file in place (lseek,
 * ftruncate, write) under an exclusive flock, so readers take a shared one: without it a
 * read can fall between the truncate and the write. Nobody waits more than LOCK_WAIT_S for
 * that lock: a controller frozen (SIGSTOP, as a drill does) while it holds it would otherwise
 * hang every reader and the other controllers. A controller that cannot get it in time skips
 * its try and keeps the lease it last saw. The holder is taken over when it is empty or its
 * renewTime is older than its leaseDurationSeconds. A file that is not a JSON object (or
 * nests arrays and objects deeper than NESTING_MAX) counts as no lease, and a field of the
 * wrong type (a holderIdentity that is not a string, a time that is not a number) as missing:
 * a lease written by hand is taken over as expired, never a reason to stop. Keys other than
 * the lease's are not written back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The lab's lease times, ingress-nginx's scaled down by 10: its --election-ttl is 30 s (the
 * lease's duration), and it gives client-go's elector a retry period of ttl/4. A lab's
 * failover is meant to be seen, not waited for. */
#define DURATION 3.0           /* leaseDurationSeconds */
#define RETRY (DURATION / 4)   /* seconds between two tries to take or renew the lease */
#define LOCK_WAIT_S 0.5        /* the longest anyone waits for the lease's lock */
#define LEASE_MAX 65536        /* the most of the file that is read, as lease.read does */
#define NESTING_MAX 64         /* arrays and objects in the file deeper than that: no lease */

static const char USAGE[] = "usage: podpath-ingress --lease PATH --identity POD [--duration SECONDS] "
                            "[--retry SECONDS] -- NGINX ARGV...";

/* ---- output -------------------------------------------------------------------------------- */

/* A growing buffer of bytes (a log line, a lease to write). */
struct buf {
    char *data;
    size_t len, cap;
};

static void buf_put(struct buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            fputs("podpath-ingress: out of memory\n", stderr);
            exit(1);
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_printf(struct buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        buf_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        return;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_put(b, big, (size_t)n);
    free(big);
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One line to the container's log (its stdout, which the lab sends to a file): the local
 * time, then the message, written at once. */
static void log_line(const char *fmt, ...) {
    struct buf line = {0};
    char stamp[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%H:%M:%S ", &tm);
    buf_puts(&line, stamp);
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof small) {
        buf_put(&line, small, (size_t)n);
    } else if (n >= 0) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            va_start(ap, fmt);
            vsnprintf(big, (size_t)n + 1, fmt, ap);
            va_end(ap);
            buf_put(&line, big, (size_t)n);
            free(big);
        }
    }
    buf_put(&line, "\n", 1);
    if (write_all(1, line.data, line.len) != 0) {
        /* the log is gone: nobody to tell */
    }
    free(line.data);
}

/* X as Python's repr(float) writes it (the shortest digits that read back as X): 3.0,
 * 1796192456.5648346, 1e-05, 1e+16; inf and nan as WORDS gives them (JSON: Infinity, NaN). */
static void put_float(struct buf *b, double x, const char *inf, const char *nan) {
    if (isnan(x)) {
        buf_puts(b, nan);
        return;
    }
    if (signbit(x))
        buf_puts(b, "-");
    x = fabs(x);
    if (isinf(x)) {
        buf_puts(b, inf);
        return;
    }
    if (x == 0) {
        buf_puts(b, "0.0");
        return;
    }
    char sci[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision - 1, x);
        if (strtod(sci, NULL) == x)
            break;
    }
    char digits[24];
    int n = 0;
    char *p = sci;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[n++] = *p;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    int exp = atoi(p + 1);
    if (exp < -4 || exp >= 16) {
        buf_put(b, digits, 1);
        if (n > 1) {
            buf_puts(b, ".");
            buf_put(b, digits + 1, (size_t)n - 1);
        }
        buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    } else if (exp < 0) {
        buf_puts(b, "0.");
        for (int i = 0; i < -exp - 1; i++)
            buf_puts(b, "0");
        buf_put(b, digits, (size_t)n);
    } else {
        for (int i = 0; i <= exp; i++)
            buf_put(b, i < n ? digits + i : "0", 1);
        buf_puts(b, ".");
        if (n > exp + 1)
            buf_put(b, digits + exp + 1, (size_t)(n - exp - 1));
        else
            buf_puts(b, "0");
    }
}

/* Python's str(X) of a float, for messages. */
static const char *float_text(double x) {
    static char text[4][48];
    static int slot;
    struct buf b = {0};
    put_float(&b, x, "inf", "nan");
    char *out = text[slot++ % 4];
    snprintf(out, sizeof text[0], "%s", b.data ? b.data : "");
    free(b.data);
    return out;
}

/* The next character of the UTF-8 text S (LEN bytes), its length in *SIZE; a byte that
 * starts no character is returned as 0xDC00 + BYTE, as Python decodes a command line. */
static unsigned decode_utf8(const unsigned char *s, size_t len, size_t *size) {
    static const unsigned least[] = {0, 0x80, 0x800, 0x10000};
    unsigned c = s[0];
    int more = c >= 0xC2 && c < 0xE0 ? 1 : c >= 0xE0 && c < 0xF0 ? 2 : c >= 0xF0 && c < 0xF5 ? 3 : 0;
    *size = 1;
    if (c < 0x80)
        return c;
    if (!more || (size_t)more >= len)
        return 0xDC00 + c;
    unsigned code = c & (0x3F >> more);
    for (int i = 1; i <= more; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0xDC00 + c;
        code = code << 6 | (s[i] & 0x3F);
    }
    if (code < least[more] || code > 0x10FFFF || (code >= 0xD800 && code < 0xE000))
        return 0xDC00 + c;
    *size = (size_t)more + 1;
    return code;
}

/* S as a JSON string, as json.dumps writes it (ensure_ascii: every character outside
 * printable ASCII escaped). */
static void put_json_string(struct buf *b, const char *s, size_t len) {
    static const char *shorts[] = {['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
    buf_puts(b, "\"");
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t size;
        unsigned c = decode_utf8(u + i, len - i, &size);
        i += size;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_put(b, esc, 2);
        } else if (c < sizeof shorts / sizeof shorts[0] && shorts[c]) {
            buf_puts(b, shorts[c]);
        } else if (c >= 0x20 && c < 0x7F) {
            char ch = (char)c;
            buf_put(b, &ch, 1);
        } else if (c >= 0x10000) {
            c -= 0x10000;
            buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
        } else {
            buf_printf(b, "\\u%04x", c);
        }
    }
    buf_puts(b, "\"");
}

/* ---- the command line ---------------------------------------------------------------------- */

static struct {
    const char *lease, *identity;
    double duration, retry;
    char **nginx;
} opt;

/* S as Python's repr(str) quotes it, for messages. */
static void put_repr(struct buf *b, const char *s) {
    char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
    buf_put(b, &quote, 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\\' || c == (unsigned char)quote)
            buf_printf(b, "\\%c", c);
        else if (c == '\n')
            buf_puts(b, "\\n");
        else if (c == '\r')
            buf_puts(b, "\\r");
        else if (c == '\t')
            buf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7F)
            buf_printf(b, "\\x%02x", c);
        else
            buf_put(b, (const char *)&c, 1);
    }
    buf_put(b, &quote, 1);
}

/* Bad arguments: say what is wrong on stderr, with the usage line, and exit 2. */
static void refuse(const char *fmt, ...) {
    struct buf b = {0};
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    buf_printf(&b, "%s\npodpath-ingress: error: %s\n", USAGE, message);
    write_all(2, b.data, b.len);
    exit(2);
}

/* TEXT as a number of seconds, as Python's float() reads it: a decimal number (underscores
 * allowed between digits), inf, infinity or nan, with blanks around it; 0 if it is none. */
static int seconds(const char *text, double *value) {
    size_t len = strlen(text);
    char *copy = malloc(len + 1), *out = copy;
    if (!copy)
        return 0;
    const char *start = text, *end = text + len;
    while (start < end && strchr(" \t\n\r\v\f", *start))
        start++;
    while (end > start && strchr(" \t\n\r\v\f", end[-1]))
        end--;
    int ok = start < end;
    for (const char *p = start; p < end && ok; p++) {
        if (*p != '_')
            *out++ = *p;
        else
            ok = p > start && p + 1 < end && p[-1] >= '0' && p[-1] <= '9' && p[1] >= '0' && p[1] <= '9';
    }
    *out = '\0';
    const char *word = copy + (copy[0] == '+' || copy[0] == '-');
    if (strcasecmp(word, "inf") != 0 && strcasecmp(word, "infinity") != 0 && strcasecmp(word, "nan") != 0)
        ok = ok && strspn(copy, "0123456789.eE+-") == strlen(copy); /* not C's hexadecimal, nor nan(...) */
    char *stop;
    *value = strtod(copy, &stop);
    ok = ok && *stop == '\0';
    free(copy);
    return ok;
}

static void help(void) {
    printf("%s\n\n  %-12s %s\n  %-12s %s\n  %-12s %s (default %g)\n  %-12s %s (default %g, a quarter of the duration)\n",
           USAGE, "--lease", "the lease file the controllers elect their leader with", "--identity",
           "this controller's name in the lease (its pod's)", "--duration", "leaseDurationSeconds", DURATION,
           "--retry", "seconds between two tries", RETRY);
}

/* The command line: the options, then (after --, or from the first word that is not an
 * option) nginx's command. */
static void parse(int argc, char **argv) {
    static const char *names[] = {"--lease", "--identity", "--duration", "--retry"};
    const char *given[4] = {NULL, NULL, NULL, NULL};
    int i = 1;
    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--") != 0) {
        const char *eq = strchr(argv[i], '=');
        size_t name_len = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        char *name = strndup(argv[i], name_len);
        if (!name)
            refuse("out of memory");
        if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
            help();
            fflush(stdout);
            exit(0);
        }
        int which = -1;
        for (int k = 0; k < 4; k++)
            if (strcmp(name, names[k]) == 0)
                which = k;
        if (which < 0)
            refuse("unknown option %s: the options are --lease, --identity, --duration, --retry", argv[i]);
        const char *value = eq ? eq + 1 : NULL;
        if (!eq) {
            if (i + 1 >= argc)
                refuse("%s needs a value", name);
            value = argv[++i];
        }
        given[which] = value;
        free(name);
        i++;
    }
    opt.nginx = i < argc && strcmp(argv[i], "--") == 0 ? argv + i + 1 : argv + i;
    for (int k = 0; k < 2; k++)
        if (!given[k] || !given[k][0])
            refuse("%s is required", names[k]);
    opt.lease = given[0];
    opt.identity = given[1];
    opt.duration = DURATION;
    opt.retry = RETRY;
    for (int k = 2; k < 4; k++) {
        double *value = k == 2 ? &opt.duration : &opt.retry;
        if (given[k] && !seconds(given[k], value)) {
            struct buf quoted = {0};
            put_repr(&quoted, given[k]);
            refuse("%s %s is not a number of seconds", names[k], quoted.data);
        }
    }
    if (!opt.nginx[0])
        refuse("no nginx command: give it after --, e.g. -- nginx -c CONF -g 'daemon off;'");
    if (!(0 < opt.retry && opt.retry < opt.duration))
        refuse("--retry %s must be above 0 and below --duration %s: a leader renews several times within the "
               "lease's duration", float_text(opt.retry), float_text(opt.duration));
}

/* ---- the lease ----------------------------------------------------------------------------- */

/* the lease's fields, in the order json.dumps(sort_keys=True) writes them */
enum { F_ACQUIRE, F_HOLDER, F_DURATION, F_TRANSITIONS, F_RENEW, FIELDS };
static const char *field_names[FIELDS] = {"acquireTime", "holderIdentity", "leaseDurationSeconds",
                                          "leaseTransitions", "renewTime"};

/* One field of the lease: absent, the JSON text it had in the file (written back as it was
 * when nothing changes it), or a value this controller sets. */
struct field {
    int present;
    const char *raw; /* the value's text in the file, or NULL once set here */
    size_t raw_len;
    int is_number;   /* a JSON number (NaN and Infinity too, as Python reads them) */
    double number;
    char *string;    /* a JSON string, decoded; NULL if the value is not a string */
    size_t string_len;
    int is_int;      /* set here: write number as an integer */
};

struct lease {
    struct field f[FIELDS];
};

static void lease_clear(struct lease *lease) {
    for (int k = 0; k < FIELDS; k++)
        free(lease->f[k].string);
    memset(lease, 0, sizeof *lease);
}

/* A reader of the JSON text in the file: a flat object of strings and numbers is what the
 * controllers write; anything else that is valid JSON is read past. */
struct reader {
    const char *s, *end;
    int depth;
};

static void blanks(struct reader *r) {
    while (r->s < r->end && (*r->s == ' ' || *r->s == '\t' || *r->s == '\n' || *r->s == '\r'))
        r->s++;
}

static int literal(struct reader *r, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->s) < n || memcmp(r->s, word, n) != 0)
        return 0;
    r->s += n;
    return 1;
}

static int hex4(const char *s, unsigned *value) {
    *value = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return 0;
        *value = *value << 4 | (unsigned)d;
    }
    return 1;
}

static void put_utf8(struct buf *b, unsigned c) {
    char out[4];
    size_t n;
    if (c < 0x80) {
        out[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | c >> 18);
        out[1] = (char)(0x80 | (c >> 12 & 0x3F));
        out[2] = (char)(0x80 | (c >> 6 & 0x3F));
        out[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    buf_put(b, out, n);
}

/* A JSON string at R (its opening quote); decoded into OUT if OUT is not NULL. */
static int string_value(struct reader *r, struct buf *out) {
    if (r->s >= r->end || *r->s != '"')
        return 0;
    r->s++;
    while (r->s < r->end) {
        unsigned char c = (unsigned char)*r->s;
        if (c == '"') {
            r->s++;
            if (out)
                buf_put(out, "", 0);
            return 1;
        }
        if (c < 0x20)
            return 0; /* a control character inside a string: not JSON */
        if (c != '\\') {
            size_t size;
            unsigned code = decode_utf8((const unsigned char *)r->s, (size_t)(r->end - r->s), &size);
            if (code >= 0xDC80 && code <= 0xDCFF && size == 1)
                return 0; /* not UTF-8 */
            if (out)
                buf_put(out, r->s, size);
            r->s += size;
            continue;
        }
        if (r->end - r->s < 2)
            return 0;
        char e = r->s[1];
        r->s += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if (out)
                buf_put(out, &decoded[simple - "\"\\/bfnrt"], 1);
            continue;
        }
        unsigned code;
        if (e != 'u' || r->end - r->s < 4 || !hex4(r->s, &code))
            return 0;
        r->s += 4;
        unsigned low;
        if (code >= 0xD800 && code < 0xDC00 && r->end - r->s >= 6 && r->s[0] == '\\' && r->s[1] == 'u' &&
            hex4(r->s + 2, &low) && low >= 0xDC00 && low < 0xE000) {
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
            r->s += 6;
        }
        if (out)
            put_utf8(out, code);
    }
    return 0;
}

/* A JSON number at R (NaN, Infinity and -Infinity as Python reads them too). */
static int number_value(struct reader *r, double *value) {
    const char *start = r->s;
    if (literal(r, "NaN")) {
        *value = NAN;
        return 1;
    }
    if (literal(r, "Infinity") || literal(r, "-Infinity")) {
        *value = *start == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    const char *p = r->s;
    if (p < r->end && *p == '-')
        p++;
    if (p >= r->end || *p < '0' || *p > '9')
        return 0;
    if (*p == '0')
        p++;
    else
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    if (p < r->end && *p == '.') {
        p++;
        if (p >= r->end || *p < '0' || *p > '9')
            return 0;
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < r->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= r->end || *p < '0' || *p > '9')
            return 0;
        while (p < r->end && *p >= '0' && *p <= '9')
            p++;
    }
    char *text = strndup(start, (size_t)(p - start));
    if (!text)
        return 0;
    *value = strtod(text, NULL);
    free(text);
    r->s = p;
    return 1;
}

static int any_value(struct reader *r);

/* A JSON array or object at R, read past. */
static int container_value(struct reader *r) {
    char close = *r->s == '[' ? ']' : '}';
    if (++r->depth > NESTING_MAX)
        return 0;
    r->s++;
    blanks(r);
    if (r->s < r->end && *r->s == close) {
        r->s++;
        r->depth--;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (!string_value(r, NULL))
                return 0;
            blanks(r);
            if (r->s >= r->end || *r->s != ':')
                return 0;
            r->s++;
            blanks(r);
        }
        if (!any_value(r))
            return 0;
        blanks(r);
        if (r->s < r->end && *r->s == ',') {
            r->s++;
            blanks(r);
            continue;
        }
        if (r->s < r->end && *r->s == close) {
            r->s++;
            r->depth--;
            return 1;
        }
        return 0;
    }
}

static int any_value(struct reader *r) {
    if (r->s >= r->end)
        return 0;
    if (*r->s == '"')
        return string_value(r, NULL);
    if (*r->s == '[' || *r->s == '{')
        return container_value(r);
    double ignored;
    return literal(r, "true") || literal(r, "false") || literal(r, "null") || number_value(r, &ignored);
}

/* The lease in TEXT (LEN bytes): 1 with its fields in LEASE if TEXT is a JSON object, else 0
 * (LEASE left empty: no lease). Keys other than the lease's are read past and not kept. */
static int parse_lease(const char *text, size_t len, struct lease *lease) {
    struct reader r = {text, text + len, 0};
    memset(lease, 0, sizeof *lease);
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        r.s += 3; /* a UTF-8 byte order mark, which Python's json.loads reads past */
    blanks(&r);
    if (r.s >= r.end || *r.s != '{')
        return 0;
    r.s++;
    blanks(&r);
    int first = 1;
    for (;;) {
        if (r.s < r.end && *r.s == '}' && first) {
            r.s++;
            break;
        }
        struct buf key = {0};
        if (!string_value(&r, &key)) {
            free(key.data);
            goto bad;
        }
        blanks(&r);
        if (r.s >= r.end || *r.s != ':') {
            free(key.data);
            goto bad;
        }
        r.s++;
        blanks(&r);
        int k = -1;
        for (int i = 0; i < FIELDS; i++)
            if (key.data && strlen(key.data) == key.len && strcmp(key.data, field_names[i]) == 0)
                k = i;
        free(key.data);
        const char *start = r.s;
        struct field value = {0};
        if (r.s < r.end && *r.s == '"') {
            struct buf s = {0};
            if (!string_value(&r, &s)) {
                free(s.data);
                goto bad;
            }
            value.string = s.data ? s.data : strdup("");
            value.string_len = s.len;
        } else if (r.s < r.end && (*r.s == '-' || *r.s == 'N' || *r.s == 'I' || (*r.s >= '0' && *r.s <= '9'))) {
            if (!number_value(&r, &value.number))
                goto bad;
            value.is_number = 1;
        } else if (!any_value(&r)) {
            goto bad;
        }
        value.present = 1;
        value.raw = start;
        value.raw_len = (size_t)(r.s - start);
        if (k >= 0) { /* the last of a key given twice counts, as in Python */
            free(lease->f[k].string);
            lease->f[k] = value;
        } else {
            free(value.string);
        }
        first = 0;
        blanks(&r);
        if (r.s < r.end && *r.s == ',') {
            r.s++;
            blanks(&r);
            if (r.s < r.end && *r.s == '}')
                goto bad; /* a trailing comma: not JSON */
            continue;
        }
        if (r.s < r.end && *r.s == '}') {
            r.s++;
            break;
        }
        goto bad;
    }
    blanks(&r);
    if (r.s == r.end)
        return 1;
bad:
    lease_clear(lease);
    return 0;
}

/* The holder's name if holderIdentity is a string, else NULL. */
static const struct field *holder(const struct lease *lease) {
    const struct field *f = &lease->f[F_HOLDER];
    return f->present && f->string ? f : NULL;
}

static int held_by(const struct lease *lease, const char *identity) {
    const struct field *h = holder(lease);
    return h && h->string_len == strlen(identity) && memcmp(h->string, identity, h->string_len) == 0;
}

/* FIELD as a number; DEFAULT when it is missing or not a number. */
static double number_or(const struct lease *lease, int k, double fallback) {
    const struct field *f = &lease->f[k];
    return f->present && f->is_number ? f->number : fallback;
}

static void set_number(struct lease *lease, int k, double value, int is_int) {
    struct field *f = &lease->f[k];
    free(f->string);
    memset(f, 0, sizeof *f);
    f->present = 1;
    f->is_number = 1;
    f->number = value;
    f->is_int = is_int;
}

static void set_string(struct lease *lease, int k, const char *value) {
    struct field *f = &lease->f[k];
    free(f->string);
    memset(f, 0, sizeof *f);
    f->present = 1;
    f->string = strdup(value);
    f->string_len = strlen(value);
}

/* LEASE as json.dumps(LEASE, sort_keys=True) writes it. */
static void lease_json(const struct lease *lease, struct buf *out) {
    buf_puts(out, "{");
    int first = 1;
    for (int k = 0; k < FIELDS; k++) {
        const struct field *f = &lease->f[k];
        if (!f->present)
            continue;
        buf_puts(out, first ? "" : ", ");
        first = 0;
        put_json_string(out, field_names[k], strlen(field_names[k]));
        buf_puts(out, ": ");
        if (f->raw)
            buf_put(out, f->raw, f->raw_len);
        else if (f->string)
            put_json_string(out, f->string, f->string_len);
        else if (f->is_int)
            buf_printf(out, "%lld", (long long)f->number);
        else
            put_float(out, f->number, "Infinity", "NaN");
    }
    buf_puts(out, "}");
}

/* What went wrong with the lease, as Python's OSError says it: "[Errno 13] Permission
 * denied: '/run/...'". */
static char trouble_text[PATH_MAX + 256];

static int fail(const char *path) {
    int err = errno;
    if (path)
        snprintf(trouble_text, sizeof trouble_text, "[Errno %d] %s: '%s'", err, strerror(err), path);
    else
        snprintf(trouble_text, sizeof trouble_text, "[Errno %d] %s", err, strerror(err));
    return -1;
}

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_real(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Take the flock KIND on FD within LOCK_WAIT_S: 1 if it was taken, 0 if not in time, -1 if
 * it cannot be (trouble_text says why). */
static int take_lock(int fd, int kind) {
    double deadline = now_mono() + LOCK_WAIT_S;
    for (;;) {
        if (flock(fd, kind | LOCK_NB) == 0)
            return 1;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return fail(NULL);
        if (now_mono() >= deadline)
            return 0;
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* The lease in the open file FD into LEASE (no lease if empty or not a JSON object); TEXT
 * keeps the bytes its fields point into. */
static int load(int fd, struct lease *lease, char *text) {
    ssize_t n;
    do
        n = read(fd, text, LEASE_MAX);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return fail(NULL);
    parse_lease(text, (size_t)n, lease);
    return 0;
}

/* Rewrite the open file FD with LEASE, in place, under its exclusive lock. */
static int store(int fd, const struct lease *lease) {
    struct buf out = {0};
    lease_json(lease, &out);
    int ok = lseek(fd, 0, SEEK_SET) == 0 && ftruncate(fd, 0) == 0 && write_all(fd, out.data, out.len) == 0;
    free(out.data);
    return ok ? 0 : fail(NULL);
}

static int open_lease(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? fail(path) : fd;
}

/* The folders above PATH, made as `mkdir -p` makes them. */
static int make_parents(const char *path) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) { /* a lease in the working folder, which is gone */
        errno = ENOENT;
        return fail("");
    }
    if (slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char end = *p;
            *p = '\0';
            if (mkdir(dir, 0777) != 0 && errno != EEXIST)
                return fail(dir);
            *p = end;
            if (!end)
                break;
        }
    }
    return 0;
}

static char lease_text[LEASE_MAX];

/* One try to acquire or renew the lease at PATH at NOW; LEASE gets the lease after it. */
static int step(const char *path, const char *identity, double duration, double now, struct lease *lease) {
    memset(lease, 0, sizeof *lease);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) { /* its folder is not there yet (the first try of the first controller) */
        if (make_parents(path) != 0)
            return -1;
        fd = open_lease(path);
    } else if (fd < 0) {
        fail(path);
    }
    if (fd < 0)
        return -1;
    int rc = take_lock(fd, LOCK_EX);
    if (rc == 0) { /* its holder is frozen: this try is skipped */
        rc = load(fd, lease, lease_text);
    } else if (rc == 1 && (rc = load(fd, lease, lease_text)) == 0) {
        int mine = held_by(lease, identity);
        const struct field *h = holder(lease);
        if (mine || !h || h->string_len == 0 ||
            now - number_or(lease, F_RENEW, 0) > number_or(lease, F_DURATION, duration)) {
            if (!mine) {
                set_number(lease, F_ACQUIRE, now, 0);
                double before = number_or(lease, F_TRANSITIONS, -1);
                if (!isfinite(before) || fabs(before) > 1e15)
                    before = -1; /* not a count of transitions */
                set_number(lease, F_TRANSITIONS, (double)((long long)before + 1), 1);
            }
            set_string(lease, F_HOLDER, identity);
            set_number(lease, F_RENEW, now, 0);
            set_number(lease, F_DURATION, duration, 0);
            rc = store(fd, lease);
        }
    }
    close(fd);
    return rc;
}

/* Give the lease up on a clean stop, so that another controller takes it at once. */
static int release(const char *path, const char *identity) {
    int fd = open_lease(path);
    if (fd < 0)
        return -1;
    struct lease lease = {0};
    int rc = take_lock(fd, LOCK_EX); /* 0: its holder is frozen, and the lease runs out instead */
    if (rc == 1 && (rc = load(fd, &lease, lease_text)) == 0 && held_by(&lease, identity)) {
        set_string(&lease, F_HOLDER, "");
        rc = store(fd, &lease);
    }
    lease_clear(&lease);
    close(fd);
    return rc;
}

/* ---- nginx --------------------------------------------------------------------------------- */

static const char *signal_name(int sig) {
    static char name[32];
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(name, sizeof name, "SIG%s", abbrev);
    else
        snprintf(name, sizeof name, "signal %d", sig);
    return name;
}

/* The exit code that carries the failure of a child whose wait status is STATUS. */
static int failure_code(int status) {
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status); /* as a shell reports it (SIGKILL: 137) */
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    return code ? code : 1; /* nginx left on its own without being asked: still a failure of the container */
}

static void describe(int status, char *out, size_t size) {
    if (WIFSIGNALED(status))
        snprintf(out, size, "was killed by %s", signal_name(WTERMSIG(status)));
    else
        snprintf(out, size, "exited with code %d", WIFEXITED(status) ? WEXITSTATUS(status) : 0);
}

/* Reap every child that has exited (nginx, and orphans the kernel gave the namespace's first
 * process); 1 with CHILD's wait status in *STATUS if it was one of them. */
static int reap(pid_t child, int *status) {
    int found = 0, st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) != 0) {
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: none left */
        }
        if (pid == child) {
            *status = st;
            found = 1;
        }
    }
    return found;
}

/* NGINX ARGV as a child in a process group of its own, with no signal blocked and every
 * signal's default action (this process ignores SIGPIPE, and a job started with & ignores
 * SIGINT and SIGQUIT: an ignored signal stays ignored across exec). */
static int start_nginx(char **argv, pid_t *pid) {
    posix_spawnattr_t attr;
    sigset_t none, every;
    sigemptyset(&none);
    sigfillset(&every);
    sigdelset(&every, SIGKILL);
    sigdelset(&every, SIGSTOP);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &every);
    int err = posix_spawnp(pid, argv[0], NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    return err;
}

static void ignore_signal(int sig) { (void)sig; }

static char *joined(char **argv) {
    struct buf b = {0};
    for (int i = 0; argv[i]; i++) {
        if (i)
            buf_puts(&b, " ");
        buf_puts(&b, argv[i]);
    }
    return b.data ? b.data : strdup("");
}

int main(int argc, char **argv) {
    parse(argc, argv);
    tzset();
    signal(SIGPIPE, SIG_IGN); /* a log nobody reads any more is no reason to die */
    sigset_t watched;
    sigemptyset(&watched);
    sigaddset(&watched, SIGCHLD);
    sigaddset(&watched, SIGTERM);
    sigaddset(&watched, SIGINT);
    /* From here on these signals stay pending until the loop asks for them (sigtimedwait): a
     * stop or nginx's exit ends the wait between two tries at once, never a write of the lease
     * half-way. nginx starts with none of them blocked (start_nginx). The stop signals also
     * get a handler (never run while they are blocked): the first process of a PID namespace
     * that has none is taken as deaf to SIGTERM and killed at once, by the kernel for signals
     * from inside and by the lab's runtime (it reads SigCgt), with no release. */
    struct sigaction handler;
    memset(&handler, 0, sizeof handler);
    handler.sa_handler = ignore_signal;
    sigemptyset(&handler.sa_mask);
    sigaction(SIGTERM, &handler, NULL);
    sigaction(SIGINT, &handler, NULL);
    sigprocmask(SIG_BLOCK, &watched, NULL);

    const char *me = opt.identity;
    char *command = joined(opt.nginx);
    pid_t nginx;
    int err = start_nginx(opt.nginx, &nginx);
    if (err) {
        log_line("cannot start nginx (%s): %s", opt.nginx[0], strerror(err));
        return 127;
    }
    log_line("%s: started nginx, pid %d: %s", me, (int)nginx, command);

    int role = -1; /* -1: not said yet; 1 primary; 0 secondary */
    char trouble[sizeof trouble_text] = "";
    int got;
    for (;;) {
        int status;
        if (reap(nginx, &status)) {
            char how[64];
            describe(status, how, sizeof how);
            log_line("%s: nginx (pid %d) %s without being asked: the controller stops renewing the lease and exits "
                     "with code %d", me, (int)nginx, how, failure_code(status));
            return failure_code(status);
        }
        struct lease lease;
        if (step(opt.lease, me, opt.duration, now_real(), &lease) != 0) {
            /* the lease cannot be read or written: try again, as client-go does */
            if (strcmp(trouble_text, trouble) != 0) {
                log_line("%s: cannot take or renew the lease %s: %s", me, opt.lease, trouble_text);
                snprintf(trouble, sizeof trouble, "%s", trouble_text);
                role = -1;
            }
        } else {
            trouble[0] = '\0';
            const struct field *h = holder(&lease);
            int now_role = held_by(&lease, me);
            if (now_role != role) {
                log_line("%s is %s (leader: %s)", me, now_role ? "primary" : "secondary", h ? h->string : "None");
                role = now_role;
            }
        }
        lease_clear(&lease);
        double until = now_mono() + opt.retry;
        for (;;) {
            double left = until - now_mono();
            if (left < 0)
                left = 0;
            if (left > 1e9)
                left = 1e9;
            struct timespec wait = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
            got = sigtimedwait(&watched, NULL, &wait);
            if (got >= 0 || errno != EINTR)
                break;
        }
        if (got == SIGTERM || got == SIGINT)
            break;
    }
    log_line("%s: %s: nginx told to quit (QUIT), lease released", me, signal_name(got));
    kill(nginx, SIGQUIT);
    if (release(opt.lease, me) != 0)
        log_line("%s: cannot release the lease %s: %s", me, opt.lease, trouble_text);
    /* the container's runtime ends a drain that outlasts its grace period */
    while (waitpid(nginx, NULL, 0) < 0 && errno == EINTR) {
    }
    log_line("%s: nginx has stopped", me);
    return 0;
}
