/* lvc_client: the libvncclient client that drives both servers in pdum.rfb's peer benchmark.
 *
 * usage: lvc_client HOST PORT ENCODINGS COMPRESS HASH TIMEOUT_S [QUALITY]
 *   ENCODINGS  libvncclient encoding list, e.g. "tight"; only these are requested
 *   COMPRESS   compress level 0-9 sent with tight/zlib (-1: none)
 *   HASH       1: CRC-32 of the framebuffer's R,G,B bytes after every update (proves which frame
 *              the client holds); 0: skip it (the extra clients of the scaling runs)
 *   QUALITY    0-9: enable JPEG and send this quality level (default: lossless, no quality level)
 * It uses the default libvncclient pixel format (32 bpp, depth 24, R,G,B,x bytes), runs until the
 * server closes the connection or TIMEOUT_S passes, then prints one JSON line:
 *   {"width": W, "height": H, "updates": N, "t_ns": [...], "bytes": [...], "crc": [...]}
 * with, for every FramebufferUpdate, the CLOCK_MONOTONIC time it finished decoding, the bytes of
 * server messages consumed since the handshake, and the CRC.
 *
 * Bytes are counted exactly: this program defines read(), which libvncclient calls through the
 * PLT, so every byte it reads from the socket passes through here; bytes read ahead but not yet
 * consumed (client->buffered) are subtracted. (TCP_INFO's byte count would race with the next
 * update, which the server may already be sending when the callback runs.)
 */
#define _GNU_SOURCE
#include <rfb/rfbclient.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static int counted_fd = -1;
static unsigned long long bytes_read;

/* Interposes libc's read() for libvncclient; counts what arrives on the RFB socket. */
ssize_t read(int fd, void *buf, size_t n) {
    ssize_t r = syscall(SYS_read, fd, buf, n);
    if (r > 0 && fd == counted_fd) bytes_read += (unsigned long long)r;
    return r;
}

static volatile sig_atomic_t timed_out;
static int hash_frames;
static int n_updates, cap;
static long long *t_ns;
static unsigned long long *bytes;
static unsigned long *crcs;
static unsigned char *rgb;

static void on_alarm(int sig) { (void)sig; timed_out = 1; }

static void quiet(const char *format, ...) { (void)format; }

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void finished(rfbClient *client) {
    long long t = now_ns();
    if (n_updates == cap) {
        cap = cap ? cap * 2 : 1024;
        t_ns = realloc(t_ns, cap * sizeof *t_ns);
        bytes = realloc(bytes, cap * sizeof *bytes);
        crcs = realloc(crcs, cap * sizeof *crcs);
        if (!t_ns || !bytes || !crcs) exit(3);
    }
    t_ns[n_updates] = t;
    bytes[n_updates] = bytes_read - client->buffered;
    crcs[n_updates] = 0;
    if (hash_frames) {
        size_t n = (size_t)client->width * client->height;
        rgb = realloc(rgb, n * 3);
        const unsigned char *fb = client->frameBuffer;
        for (size_t i = 0; i < n; i++) memcpy(rgb + 3 * i, fb + 4 * i, 3);
        crcs[n_updates] = crc32(crc32(0L, Z_NULL, 0), rgb, (uInt)(n * 3));
    }
    n_updates++;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s HOST PORT ENCODINGS COMPRESS HASH TIMEOUT_S [QUALITY]\n", argv[0]);
        return 2;
    }
    rfbClientLog = quiet;
    rfbClientErr = quiet;
    hash_frames = atoi(argv[5]);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)atoi(argv[6]));

    rfbClient *client = rfbGetClient(8, 3, 4);
    client->serverHost = strdup(argv[1]);
    client->serverPort = atoi(argv[2]);
    client->appData.encodingsString = argv[3];
    client->appData.compressLevel = atoi(argv[4]);
    client->appData.enableJPEG = FALSE;
    client->appData.shareDesktop = TRUE;
    if (argc > 7) {
        client->appData.enableJPEG = TRUE;
        client->appData.qualityLevel = atoi(argv[7]);
    }
    client->FinishedFrameBufferUpdate = finished;
    /* The socket exists only after rfbInitClient (the handshake): count from there on. */
    if (!rfbInitClient(client, NULL, NULL)) return 1; /* frees client on failure */
    counted_fd = client->sock;
    while (!timed_out) {
        int n = WaitForMessage(client, 100000);
        if (n < 0) break;
        if (n > 0 && !HandleRFBServerMessage(client)) break;
    }
    printf("{\"width\": %d, \"height\": %d, \"updates\": %d, \"timed_out\": %d, \"t_ns\": [",
           client->width, client->height, n_updates, (int)timed_out);
    for (int i = 0; i < n_updates; i++) printf("%s%lld", i ? ", " : "", t_ns[i]);
    printf("], \"bytes\": [");
    for (int i = 0; i < n_updates; i++) printf("%s%llu", i ? ", " : "", bytes[i]);
    printf("], \"crc\": [");
    for (int i = 0; i < n_updates; i++) printf("%s%lu", i ? ", " : "", crcs[i]);
    printf("]}\n");
    fflush(stdout);
    rfbClientCleanup(client);
    return 0;
}
