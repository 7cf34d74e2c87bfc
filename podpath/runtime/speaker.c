/*
 * podpath-speaker: MetalLB's speaker in layer 2 mode, for one node of the netns lab.
 *
 *   podpath-speaker CONFIG                       run as node's speaker, in its network namespace
 *   podpath-speaker --announcer ADDRESS NODE...  print which of NODE... announces ADDRESS
 *   podpath-speaker --order ADDRESS NODE...      print NODE... in the order MetalLB ranks them
 *                                                for ADDRESS, each after its SHA-256 digest
 *
 * It runs in the node's network namespace, as the real speaker runs with hostNetwork. Each
 * speaker tells the others it is alive with a small UDP message, {"node": NAME, "ip": ADDRESS},
 * broadcast on the node link every `interval` seconds (1 s, memberlist's probe interval in
 * MetalLB's default LAN configuration; MetalLB uses memberlist for this), and forgets a node it
 * has not heard from for `dead_after` seconds (3 s: memberlist suspects a silent member for at
 * least four probe intervals before it declares it dead; the lab's window is shorter so that a
 * failover is seen within the verifier's 5 s). A heartbeat the kernel refuses to send means the
 * node's link is down: it cannot be reached, so it must not announce.
 *
 * For every address of the pool, the alive nodes are ordered as MetalLB orders them (the SHA-256
 * digest of "<node>#<address>", compared byte by byte: podpath/model/election.py, which the
 * verifier uses, says why) and the first one announces it: it answers ARP requests for the
 * address with its own MAC, from a packet socket, without putting the address on any interface,
 * and sends gratuitous ARP when it takes the address over, again every `garp_every` seconds
 * (1.1 s) for `garp_for` seconds (5 s) as MetalLB's announcer does (a neighbour table that
 * ignored the first one, because its entry changed less than a second before, takes a later
 * one). A frame the kernel refuses to send (a full queue, or a filter on the way out) is logged
 * and the speaker goes on, as MetalLB's does: it never exits over a lost answer.
 *
 * Nothing runs on a timer but the heartbeat (and the gratuitous ARP after a takeover): the
 * speaker sleeps until its next heartbeat, a message, an ARP request, or the moment a silent
 * node's time runs out, and elects again only when the set of alive nodes (or its own link)
 * changed. It answers the first heartbeat of a node it did not count alive with one of its own
 * at once, so that a speaker that starts (or gets its link back) learns the others within
 * moments, as memberlist's join exchanges the member list; until it has heard every member, one
 * interval at most, it does not elect, so that it never announces an address another node holds.
 *
 * Its status is written to a JSON file for the verifier and for `podpath status` when it
 * changes, atomically (FILE.tmp, then rename):
 *
 *   {"node": NAME, "ip": ADDRESS, "mac": "aa:bb:cc:dd:ee:ff", "alive": [NODE...],
 *    "announcing": [ADDRESS...], "link_ok": true|false, "updated": epoch seconds, "pid": N}
 *
 * and with every heartbeat the speaker renews the file's modification time (one utimensat),
 * which is how a reader tells a running speaker's status from one left by a speaker that stopped
 * or froze. On SIGTERM or SIGINT it removes the file and exits 0.
 *
 * CONFIG, which podpath/model/workloads.py renders, has one setting a line, a word and its
 * value(s); a line that starts with # is a comment:
 *
 *   node NAME              this speaker's node
 *   ip ADDRESS             the node's address on its link
 *   interface NAME         the node's link
 *   broadcast ADDRESS      the link's broadcast address, where heartbeats go
 *   status FILE            the status file
 *   member NAME ADDRESS    one line for each node of the lab, this one too
 *   address ADDRESS        one line for each address to elect an announcer for
 *   port N                 the heartbeats' UDP port (7946, memberlist's in MetalLB)
 *   interval SECONDS       between two heartbeats (1)
 *   dead_after SECONDS     of silence after which a node is forgotten (3)
 *   garp_every SECONDS     between two repeated gratuitous ARPs (1.1)
 *   garp_for SECONDS       how long gratuitous ARP is repeated after a takeover (5)
 *
 * A bad or missing setting is refused with exit code 2, naming the file, the line and the fix.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_MEMBERS 64  /* the alive set is a bit mask */
#define MAX_ADDRESSES 64
#define NAME_MAX_LEN 253  /* a node name is a DNS name */
#define FOREVER 1e300

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------ */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return x >> n | x << (32 - n); }

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ w[i - 15] >> 3;
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ w[i - 2] >> 10;
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

static void sha256(const uint8_t *data, size_t size, uint8_t out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t whole = size / 64 * 64, rest = size - whole;
    for (size_t i = 0; i < whole; i += 64)
        sha256_block(h, data + i);
    /* the last bytes, a 1 bit, zeros, and the length in bits: one block or two */
    uint8_t tail[128] = {0};
    memcpy(tail, data + whole, rest);
    tail[rest] = 0x80;
    size_t end = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)size * 8;
    for (int i = 0; i < 8; i++)
        tail[end - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t i = 0; i < end; i += 64)
        sha256_block(h, tail + i);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

/* MetalLB's rank of NODE for ADDRESS: sha256("<node>#<address>"); the lowest announces. */
static void rank(const char *node, const char *address, uint8_t out[32]) {
    size_t n = strlen(node), a = strlen(address);
    uint8_t *key = malloc(n + 1 + a);
    if (!key) {
        fputs("podpath-speaker: out of memory\n", stderr);
        exit(1);
    }
    memcpy(key, node, n);
    key[n] = '#';
    memcpy(key + n + 1, address, a);
    sha256(key, n + 1 + a, out);
    free(key);
}

/* ---- the configuration ------------------------------------------------------------------------ */
struct member {
    char name[NAME_MAX_LEN + 1];
    char ip[INET_ADDRSTRLEN];
    int heard;         /* a heartbeat of it came since the start */
    double last_seen;  /* when its last heartbeat came (monotonic) */
};

struct address {
    char text[INET_ADDRSTRLEN];
    uint8_t bytes[4];
    uint8_t rank[MAX_MEMBERS][32];  /* rank() of each member for this address */
    int announcing;
    double garp_until;  /* when its repeated gratuitous ARP stops; 0: none */
};

static struct {
    const char *path;
    char node[NAME_MAX_LEN + 1], ip[INET_ADDRSTRLEN], interface[IF_NAMESIZE], broadcast[INET_ADDRSTRLEN];
    char *status;
    struct member members[MAX_MEMBERS];
    int n_members, self;  /* self: this node's index in members */
    struct address addresses[MAX_ADDRESSES];
    int n_addresses;
    int port;
    double interval, dead_after, garp_every, garp_for;
} cfg;  /* zeros, in no page of the program's file; read_config sets the defaults */

#define FIX "podpath up writes this file from the topology: run it again"

static void refuse(int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (line)
        fprintf(stderr, "podpath-speaker: %s, line %d: ", cfg.path, line);
    else
        fprintf(stderr, "podpath-speaker: %s: ", cfg.path);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (" FIX ")\n");
    va_end(ap);
    exit(2);
}

static int name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (; *s; s++)
        if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') && !(*s >= '0' && *s <= '9') &&
            *s != '-' && *s != '.' && *s != '_')
            return 0;
    return 1;
}

static void ipv4(int line, const char *key, const char *text, char out[INET_ADDRSTRLEN], uint8_t bytes[4]) {
    struct in_addr a;
    if (inet_pton(AF_INET, text, &a) != 1)
        refuse(line, "%s: '%s' is not an IPv4 address (e.g. %s 192.168.56.11)", key, text, key);
    inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN);
    if (bytes)
        memcpy(bytes, &a, 4);
}

static double positive_seconds(int line, const char *key, const char *text) {
    char *end;
    double value = strtod(text, &end);
    if (*end != '\0' || !(value > 0 && value <= 86400))
        refuse(line, "%s: '%s' is not a number of seconds above 0 and at most 86400 (e.g. %s 1)", key, text, key);
    return value;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const struct member *)a)->name, ((const struct member *)b)->name);
}

static int by_text(const void *a, const void *b) {
    return strcmp(((const struct address *)a)->text, ((const struct address *)b)->text);
}

static const char *SETTINGS = "node, ip, interface, broadcast, status, member, address, port, interval, "
                              "dead_after, garp_every, garp_for";

/* Read CONFIG into cfg, or exit 2 saying what is wrong and how to put it right. */
static void read_config(const char *path) {
    cfg.path = path;
    /* memberlist's probe interval and MetalLB's port; the lab's dead window (above); MetalLB's
     * repeated gratuitous ARP */
    cfg.port = 7946, cfg.interval = 1.0, cfg.dead_after = 3.0, cfg.garp_every = 1.1, cfg.garp_for = 5.0;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "podpath-speaker: cannot read its configuration %s: %s (" FIX ")\n", path, strerror(errno));
        exit(2);
    }
    char *text = NULL;
    size_t size = 0;
    int line = 0, seen[32] = {0};
    while (getline(&text, &size, f) >= 0) {
        line++;
        char *words[4], *save = NULL;
        int n = 0;
        for (char *w = strtok_r(text, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save))
            if (n < 4)
                words[n++] = w;
            else
                n = 5;
        if (n == 0 || words[0][0] == '#')
            continue;
        const char *key = words[0];
        static const char *single[] = {"node", "ip", "interface", "broadcast", "status", "port", "interval",
                                       "dead_after", "garp_every", "garp_for", NULL};
        static const char *lists[] = {"member", "address", NULL};
        int which = -1, list = 0;
        for (int i = 0; single[i]; i++)
            if (strcmp(key, single[i]) == 0)
                which = i;
        for (int i = 0; lists[i]; i++)
            if (strcmp(key, lists[i]) == 0)
                which = 16 + i, list = 1;
        if (which < 0)
            refuse(line, "unknown setting '%s' (the settings are: %s)", key, SETTINGS);
        if (!list && seen[which])
            refuse(line, "%s is given a second time (once only)", key);
        seen[which] = 1;
        int want = strcmp(key, "member") == 0 ? 3 : 2;
        if (n != want)
            refuse(line, "%s takes %s", key,
                   want == 3 ? "a node name and its address (e.g. member worker1 192.168.56.11)" : "one value");
        const char *value = words[1];
        if (strcmp(key, "node") == 0) {
            if (!name_ok(value))
                refuse(line, "node: '%s' is not a node name (letters, digits, '-', '.', '_'; at most %d)", value,
                       NAME_MAX_LEN);
            strcpy(cfg.node, value);
        } else if (strcmp(key, "ip") == 0) {
            ipv4(line, key, value, cfg.ip, NULL);
        } else if (strcmp(key, "broadcast") == 0) {
            ipv4(line, key, value, cfg.broadcast, NULL);
        } else if (strcmp(key, "interface") == 0) {
            if (strlen(value) >= IF_NAMESIZE)
                refuse(line, "interface: '%s' is longer than an interface name (%d characters at most)", value,
                       IF_NAMESIZE - 1);
            strcpy(cfg.interface, value);
        } else if (strcmp(key, "status") == 0) {
            if (!(cfg.status = strdup(value)))
                refuse(line, "out of memory");
        } else if (strcmp(key, "port") == 0) {
            char *end;
            long port = strtol(value, &end, 10);
            if (*end != '\0' || port < 1 || port > 65535)
                refuse(line, "port: '%s' is not a UDP port (1 to 65535; MetalLB's is 7946)", value);
            cfg.port = (int)port;
        } else if (strcmp(key, "interval") == 0) {
            cfg.interval = positive_seconds(line, key, value);
        } else if (strcmp(key, "dead_after") == 0) {
            cfg.dead_after = positive_seconds(line, key, value);
        } else if (strcmp(key, "garp_every") == 0) {
            cfg.garp_every = positive_seconds(line, key, value);
        } else if (strcmp(key, "garp_for") == 0) {
            cfg.garp_for = positive_seconds(line, key, value);
        } else if (strcmp(key, "member") == 0) {
            if (cfg.n_members == MAX_MEMBERS)
                refuse(line, "more than %d members (the speaker counts at most %d nodes)", MAX_MEMBERS, MAX_MEMBERS);
            if (!name_ok(value))
                refuse(line, "member: '%s' is not a node name (letters, digits, '-', '.', '_'; at most %d)", value,
                       NAME_MAX_LEN);
            for (int i = 0; i < cfg.n_members; i++)
                if (strcmp(cfg.members[i].name, value) == 0)
                    refuse(line, "member %s is given a second time (one line a node)", value);
            struct member *m = &cfg.members[cfg.n_members++];
            strcpy(m->name, value);
            ipv4(line, key, words[2], m->ip, NULL);
        } else {  /* address */
            if (cfg.n_addresses == MAX_ADDRESSES)
                refuse(line, "more than %d addresses (the speaker elects for at most %d)", MAX_ADDRESSES,
                       MAX_ADDRESSES);
            struct address *a = &cfg.addresses[cfg.n_addresses];
            ipv4(line, key, value, a->text, a->bytes);
            for (int i = 0; i < cfg.n_addresses; i++)
                if (strcmp(cfg.addresses[i].text, a->text) == 0)
                    refuse(line, "address %s is given a second time (one line an address)", a->text);
            cfg.n_addresses++;
        }
    }
    free(text);
    fclose(f);
    static const char *needed[][2] = {
        {"node", "this speaker's node, e.g. node worker1"},
        {"ip", "the node's address on its link, e.g. ip 192.168.56.11"},
        {"interface", "the node's link, e.g. interface eth1"},
        {"broadcast", "the link's broadcast address, e.g. broadcast 192.168.56.255"},
        {"status", "the status file, e.g. status /run/podpath/LAB/metallb/worker1.json"},
    };
    for (int i = 0; i < 5; i++)
        if (!seen[i])
            refuse(0, "no %s line: it names %s", needed[i][0], needed[i][1]);
    if (cfg.n_members == 0)
        refuse(0, "no member line: one for each node of the lab, this one too, e.g. member worker1 192.168.56.11");
    if (cfg.dead_after <= cfg.interval)
        refuse(0, "dead_after (%g s) is not longer than interval (%g s): every node would be forgotten between "
                  "two of its heartbeats", cfg.dead_after, cfg.interval);
    qsort(cfg.members, cfg.n_members, sizeof cfg.members[0], by_name);
    qsort(cfg.addresses, cfg.n_addresses, sizeof cfg.addresses[0], by_text);
    cfg.self = -1;
    for (int i = 0; i < cfg.n_members; i++)
        if (strcmp(cfg.members[i].name, cfg.node) == 0)
            cfg.self = i;
    if (cfg.self < 0)
        refuse(0, "node %s is not among the members: add the line member %s %s", cfg.node, cfg.node, cfg.ip);
    for (int a = 0; a < cfg.n_addresses; a++)
        for (int m = 0; m < cfg.n_members; m++)
            rank(cfg.members[m].name, cfg.addresses[a].text, cfg.addresses[a].rank[m]);
}

/* ---- the speaker ---------------------------------------------------------------------------- */
static int udp = -1, arp = -1;
static uint8_t mac[6];
static char message[2 * NAME_MAX_LEN];
static size_t message_len;
static struct sockaddr_in broadcast_to;
static int link_ok = 1;
static double join_until, next_garp = FOREVER;
static unsigned long send_failures;
static volatile sig_atomic_t stop;

static double now_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* One line to the speaker's log (its stdout, which the lab sends to a file): the time, then MESSAGE. */
static void say(const char *fmt, ...) {
    char stamp[16];
    time_t t = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%H:%M:%S", localtime_r(&t, &tm));
    printf("%s ", stamp);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void leave(int code) {
    if (cfg.status)
        unlink(cfg.status);
    exit(code);
}

static void fail(const char *what) {
    fprintf(stderr, "podpath-speaker: %s: %s: %s\n", cfg.node, what, strerror(errno));
    leave(1);
}

typedef uint64_t nodes_t;  /* a set of members, one bit each (their index in cfg.members) */

static nodes_t alive_at(double now) {
    nodes_t alive = 0;
    for (int i = 0; i < cfg.n_members; i++)
        if (cfg.members[i].heard && now - cfg.members[i].last_seen < cfg.dead_after)
            alive |= (nodes_t)1 << i;
    if (link_ok)
        alive |= (nodes_t)1 << cfg.self;
    return alive;
}

/* When the first node still alive at NOW goes silent for dead_after (FOREVER: none). */
static double next_expiry(double now) {
    double first = FOREVER;
    for (int i = 0; i < cfg.n_members; i++) {
        const struct member *m = &cfg.members[i];
        if (m->heard && now - m->last_seen < cfg.dead_after && m->last_seen + cfg.dead_after < first)
            first = m->last_seen + cfg.dead_after;
    }
    return first;
}

/* "cp1, worker1": the names of NODES, in order */
static const char *names(nodes_t nodes) {
    static char out[MAX_MEMBERS * (NAME_MAX_LEN + 2) + 1];
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < cfg.n_members; i++)
        if (nodes >> i & 1)
            used += snprintf(out + used, sizeof out - used, "%s%s", used ? ", " : "", cfg.members[i].name);
    return out;
}

static void heartbeat(void) {
    /* a heartbeat the kernel refuses: the node's link is down, it cannot be reached, so it must not announce */
    link_ok = sendto(udp, message, message_len, 0, (struct sockaddr *)&broadcast_to, sizeof broadcast_to) >= 0;
}

/* Note a peer's heartbeat; 1 if that peer was not alive before (it just started, or its link
 * came back), which the speaker answers at once with a heartbeat of its own. */
static int receive_heartbeat(double now) {
    char data[2049];
    ssize_t n = recv(udp, data, sizeof data - 1, MSG_DONTWAIT);
    if (n < 0 || ((size_t)n == message_len && memcmp(data, message, message_len) == 0))
        return 0;  /* nothing, or its own broadcast, looped back */
    data[n] = '\0';
    /* the value of "node": a string without escapes */
    char *p = strstr(data, "\"node\"");
    if (!p)
        return 0;
    p += 6;
    p += strspn(p, " \t\r\n");
    if (*p++ != ':')
        return 0;
    p += strspn(p, " \t\r\n");
    if (*p++ != '"')
        return 0;
    size_t len = strcspn(p, "\"\\");
    if (p[len] != '"')
        return 0;
    for (int i = 0; i < cfg.n_members; i++) {
        struct member *m = &cfg.members[i];
        if (i == cfg.self || strlen(m->name) != len || memcmp(m->name, p, len) != 0)
            continue;
        int new = !m->heard || now - m->last_seen >= cfg.dead_after;
        m->heard = 1;
        m->last_seen = now;
        return new;
    }
    return 0;
}

static void send_frame(const uint8_t *frame, size_t size, const char *what) {
    if (send(arp, frame, size, 0) < 0) {
        send_failures++;
        say("%s: could not send %s: %s (failure %lu); going on", cfg.node, what, strerror(errno), send_failures);
    }
}

/* An Ethernet frame to ETH_DST carrying an ARP message OP from this node's MAC and SRC_IP to DST_MAC and DST_IP. */
static void arp_frame(uint8_t frame[42], int op, const uint8_t src_ip[4], const uint8_t dst_mac[6],
                      const uint8_t dst_ip[4], const uint8_t eth_dst[6]) {
    static const uint8_t head[8] = {0, 1, 8, 0, 6, 4};  /* Ethernet, IPv4, 6-byte and 4-byte addresses */
    memcpy(frame, eth_dst, 6);
    memcpy(frame + 6, mac, 6);
    frame[12] = ETH_P_ARP >> 8, frame[13] = ETH_P_ARP & 0xff;
    memcpy(frame + 14, head, 6);
    frame[20] = 0, frame[21] = (uint8_t)op;
    memcpy(frame + 22, mac, 6);
    memcpy(frame + 28, src_ip, 4);
    memcpy(frame + 32, dst_mac, 6);
    memcpy(frame + 38, dst_ip, 4);
}

static const uint8_t BROADCAST_MAC[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void gratuitous(const struct address *a) {
    static const uint8_t zero[6];
    char what[64];
    snprintf(what, sizeof what, "gratuitous ARP for %s", a->text);
    for (int op = 1; op <= 2; op++) {  /* a request, then a reply, both to everyone */
        uint8_t frame[42];
        arp_frame(frame, op, a->bytes, op == 2 ? BROADCAST_MAC : zero, a->bytes, BROADCAST_MAC);
        send_frame(frame, sizeof frame, what);
    }
}

/* The gratuitous ARP due at NOW for the addresses taken over in the last garp_for seconds. */
static void repeat_gratuitous(double now) {
    if (now < next_garp)
        return;
    int any = 0;
    for (int i = 0; i < cfg.n_addresses; i++) {
        struct address *a = &cfg.addresses[i];
        if (a->garp_until && (!a->announcing || now >= a->garp_until))
            a->garp_until = 0;
        if (a->garp_until) {
            gratuitous(a);
            any = 1;
        }
    }
    next_garp = any ? now + cfg.garp_every : FOREVER;
}

static void receive_arp(void) {
    uint8_t frame[2048];
    ssize_t n = recv(arp, frame, sizeof frame, MSG_DONTWAIT);
    if (n < 42 || frame[12] != 0x08 || frame[13] != 0x06)
        return;
    int op = frame[20] << 8 | frame[21];
    const uint8_t *sha = frame + 22, *spa = frame + 28, *tpa = frame + 38;
    if (op != 1 || memcmp(sha, mac, 6) == 0)
        return;
    for (int i = 0; i < cfg.n_addresses; i++) {
        const struct address *a = &cfg.addresses[i];
        if (!a->announcing || memcmp(tpa, a->bytes, 4) != 0)
            continue;
        uint8_t answer[42];
        char asker[INET_ADDRSTRLEN], what[96];
        inet_ntop(AF_INET, spa, asker, sizeof asker);
        snprintf(what, sizeof what, "the ARP answer for %s to %s", a->text, asker);
        arp_frame(answer, 2, a->bytes, sha, spa, sha);
        send_frame(answer, sizeof answer, what);
    }
}

/* The member of ALIVE that announces address A (MetalLB's order: the lowest rank), or -1. */
static int announcer(nodes_t alive, const struct address *a) {
    int best = -1;
    for (int i = 0; i < cfg.n_members; i++)
        if (alive >> i & 1 && (best < 0 || memcmp(a->rank[i], a->rank[best], 32) < 0))
            best = i;
    return best;
}

/* Elect among ALIVE (the nodes heard from lately, and this one while its link is up). */
static void elect_all(nodes_t alive, double now) {
    int mine[MAX_ADDRESSES];
    for (int i = 0; i < cfg.n_addresses; i++)
        mine[i] = announcer(alive, &cfg.addresses[i]) == cfg.self;
    for (int i = 0; i < cfg.n_addresses; i++) {
        struct address *a = &cfg.addresses[i];
        if (!mine[i] || a->announcing)
            continue;
        gratuitous(a);
        a->garp_until = now + cfg.garp_for;
        if (now + cfg.garp_every < next_garp)
            next_garp = now + cfg.garp_every;
        say("%s: announcing %s (alive: %s); gratuitous ARP sent, again every %g s for %g s", cfg.node, a->text,
            names(alive), cfg.garp_every, cfg.garp_for);
    }
    for (int i = 0; i < cfg.n_addresses; i++) {
        struct address *a = &cfg.addresses[i];
        if (mine[i] || !a->announcing)
            continue;
        a->garp_until = 0;
        say("%s: no longer announcing %s (alive: %s)", cfg.node, a->text, names(alive));
    }
    for (int i = 0; i < cfg.n_addresses; i++)
        cfg.addresses[i].announcing = mine[i];
}

static void write_status(nodes_t alive) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", cfg.status) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        fail("cannot write its status");
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        fail("cannot write its status");
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    fprintf(f, "{\"node\": \"%s\", \"ip\": \"%s\", \"mac\": \"%02x:%02x:%02x:%02x:%02x:%02x\", \"alive\": [", cfg.node,
            cfg.ip, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    int first = 1;
    for (int i = 0; i < cfg.n_members; i++)
        if (alive >> i & 1) {
            fprintf(f, "%s\"%s\"", first ? "" : ", ", cfg.members[i].name);
            first = 0;
        }
    fputs("], \"announcing\": [", f);
    first = 1;
    for (int i = 0; i < cfg.n_addresses; i++)
        if (cfg.addresses[i].announcing) {
            fprintf(f, "%s\"%s\"", first ? "" : ", ", cfg.addresses[i].text);
            first = 0;
        }
    fprintf(f, "], \"link_ok\": %s, \"updated\": %ld.%06ld, \"pid\": %d}", link_ok ? "true" : "false",
            (long)t.tv_sec, t.tv_nsec / 1000, (int)getpid());
    if (ferror(f) | fclose(f) || rename(tmp, cfg.status) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        fail("cannot write its status");
    }
}

/* Renew the status file's modification time: the speaker runs. 0 if the file is gone. */
static int touch_status(void) { return utimensat(AT_FDCWD, cfg.status, NULL, 0) == 0; }

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void open_sockets(void) {
    unsigned index = if_nametoindex(cfg.interface);
    if (index == 0) {
        fprintf(stderr, "podpath-speaker: %s: no interface %s in this network namespace: %s\n", cfg.node,
                cfg.interface, strerror(errno));
        exit(1);
    }
    arp = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
    if (arp < 0)
        fail("cannot open a packet socket for ARP (it needs CAP_NET_RAW)");
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP), .sll_ifindex = (int)index};
    socklen_t size = sizeof ll;
    if (bind(arp, (struct sockaddr *)&ll, sizeof ll) != 0 || getsockname(arp, (struct sockaddr *)&ll, &size) != 0)
        fail("cannot bind its ARP socket");
    memcpy(mac, ll.sll_addr, 6);

    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (udp < 0 || setsockopt(udp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(udp, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) != 0 ||
        setsockopt(udp, SOL_SOCKET, SO_BINDTODEVICE, cfg.interface, strlen(cfg.interface) + 1) != 0)
        fail("cannot open its UDP socket");
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(cfg.port), .sin_addr.s_addr = INADDR_ANY};
    if (bind(udp, (struct sockaddr *)&any, sizeof any) != 0)
        fail("cannot bind its UDP port");
    broadcast_to = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(cfg.port)};
    inet_pton(AF_INET, cfg.broadcast, &broadcast_to.sin_addr);
    message_len = (size_t)snprintf(message, sizeof message, "{\"node\": \"%s\", \"ip\": \"%s\"}", cfg.node, cfg.ip);
}

static void run(void) {
    double next_beat = 0;
    int written = 0, written_link = 0;  /* what the status file says: whether there is one, alive, link */
    nodes_t written_alive = 0;
    nodes_t everyone = cfg.n_members == 64 ? ~(nodes_t)0 : ((nodes_t)1 << cfg.n_members) - 1;
    sigset_t none;
    sigemptyset(&none);
    join_until = now_mono() + cfg.interval;
    while (!stop) {
        double now = now_mono();
        int beat = now >= next_beat;
        if (beat) {
            int was_up = link_ok;
            heartbeat();
            next_beat = now + cfg.interval;
            if (link_ok && !was_up)
                join_until = now + cfg.interval;  /* back on the LAN: hear the others first */
        }
        nodes_t alive = alive_at(now);
        /* just started or back on the LAN, and not every member heard yet: no election */
        int joining = now < join_until && (alive & everyone) != everyone;
        if (!joining && (!written || alive != written_alive || link_ok != written_link ||
                         (beat && !touch_status()))) {
            elect_all(alive, now);
            write_status(alive);
            written = 1, written_alive = alive, written_link = link_ok;
        }
        repeat_gratuitous(now);
        /* sleep until the next heartbeat, a message, an ARP request, a node's time running out,
         * the next gratuitous ARP, or the end of the join */
        double wake = next_beat;
        double others[3] = {next_expiry(now), next_garp, joining ? join_until : next_beat};
        for (int i = 0; i < 3; i++)
            if (others[i] < wake)
                wake = others[i];
        double left = wake > now ? wake - now : 0;
        struct timespec timeout = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
        struct pollfd fds[2] = {{udp, POLLIN, 0}, {arp, POLLIN, 0}};
        if (ppoll(fds, 2, &timeout, &none) < 0) {  /* SIGTERM, SIGINT come only here */
            if (errno == EINTR)
                continue;
            fail("cannot wait for its sockets");
        }
        now = now_mono();
        /* a node that just started (or came back) learns the others at once, as memberlist's
         * join exchanges the member list. An error waiting on a socket (its link went down:
         * ENETDOWN) is taken by the recv that fails, or poll would wake again at once. */
        if (fds[0].revents & (POLLIN | POLLERR) && receive_heartbeat(now) && link_ok)
            heartbeat();
        if (fds[1].revents & (POLLIN | POLLERR))
            receive_arp();
    }
}

/* --announcer ADDRESS NODE... and --order ADDRESS NODE... */
static int election(int order, const char *address, int n, char **nodes) {
    uint8_t (*digests)[32] = calloc(n ? n : 1, 32);
    int *ranked = calloc(n ? n : 1, sizeof *ranked), count = 0;
    if (!digests || !ranked) {
        fputs("podpath-speaker: out of memory\n", stderr);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        int again = 0;
        for (int j = 0; j < count; j++)
            again |= strcmp(nodes[ranked[j]], nodes[i]) == 0;
        if (again)
            continue;  /* a candidate counts once */
        rank(nodes[i], address, digests[i]);
        int at = count++;  /* insertion into the ranking, lowest digest first */
        while (at > 0 && memcmp(digests[ranked[at - 1]], digests[i], 32) > 0) {
            ranked[at] = ranked[at - 1];
            at--;
        }
        ranked[at] = i;
    }
    if (count == 0) {
        fprintf(stderr, "podpath-speaker: no candidate node: nobody announces %s\n", address);
        return 1;
    }
    for (int j = 0; j < (order ? count : 1); j++) {
        if (order) {
            for (int b = 0; b < 32; b++)
                printf("%02x", digests[ranked[j]][b]);
            putchar(' ');
        }
        puts(nodes[ranked[j]]);
    }
    free(digests);
    free(ranked);
    return 0;
}

static void usage(void) {
    fputs("usage: podpath-speaker CONFIG\n"
          "       podpath-speaker --announcer ADDRESS NODE...   (which node announces ADDRESS)\n"
          "       podpath-speaker --order ADDRESS NODE...       (the nodes in MetalLB's order for ADDRESS)\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc >= 3 && (strcmp(argv[1], "--announcer") == 0 || strcmp(argv[1], "--order") == 0))
        return election(argv[1][2] == 'o', argv[2], argc - 3, argv + 3);
    if (argc != 2 || argv[1][0] == '-')
        usage();
    read_config(argv[1]);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, NULL);  /* delivered only while it sleeps in ppoll */
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    open_sockets();
    say("%s: speaker up on %s (%s)", cfg.node, cfg.interface, cfg.ip);
    run();
    leave(0);
}
