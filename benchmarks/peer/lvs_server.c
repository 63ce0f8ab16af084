/* lvs_server: the libvncserver reference server for pdum.rfb's peer benchmark.
 *
 * usage: lvs_server PORT WIDTH HEIGHT NFRAMES FRAMEFILE NCLIENTS TIMEOUT_S [FPS]
 *   FRAMEFILE  NFRAMES frames of WIDTH*HEIGHT*3 bytes (RGB, row-major), written by the harness;
 *              pdum.rfb's benchmark server reads the same file, so both serve identical frames.
 *   NCLIENTS   how many clients to wait for before the measured run starts.
 *
 * Lock-step protocol (the same as pdum/rfb/bench/pdum_server.py):
 *   frame 0 is in the framebuffer before anyone connects; once NCLIENTS clients have received
 *   it and asked for more (plus a 0.2 s settle), frame k+1 is published only when every client has received frame k
 *   and sent its next incremental FramebufferUpdateRequest. So each client gets every frame,
 *   exactly once, whatever the encoding costs.
 * With FPS, frames are published on a clock instead (as pdum_server.py does with FPS): frame k
 * (k >= 1) at start + (k - 1) / FPS, each followed by its whole period of serving clients.
 * Publishing a frame = convert RGB to the framebuffer's 32-bit pixels, compare with the previous
 * frame per 64x64 tile (the granularity of pdum.rfb's damage tracking) and rfbMarkRectAsModified
 * each changed tile, so both servers get the same damage.
 *
 * It listens on 127.0.0.1 only (no IPv6, no HTTP), exits by itself after the last frame, and
 * alarm() kills it after TIMEOUT_S whatever happens. On success it prints one JSON line:
 *   {"cpu_s": ..., "cpu_user_s": ..., "cpu_sys_s": ..., "wall_s": ..., "frames": ..., "clients": ...,
 *    "bytes_sent": ..., "minor_faults": ..., "publish_ns": [...]}
 * cpu_s is getrusage(RUSAGE_SELF) user + system over the lock-step run (frames 1..N-1), exactly as
 * the Python server measures itself.
 */
#include <rfb/rfb.h>
#include <rfb/rfbregion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define TILE 64
#define SETTLE_NS 200000000LL /* 0.2 s, as in pdum_server.py */

typedef struct {
    int updates; /* FramebufferUpdates sent to this client */
} ClientStats;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* User and system CPU seconds of this process (every thread), as Python's resource.getrusage. */
static long minor_faults;

static void cpu_seconds(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    minor_faults = ru.ru_minflt;
    *user = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
    *sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static enum rfbNewClientAction new_client(rfbClientPtr cl) {
    cl->clientData = calloc(1, sizeof(ClientStats));
    return RFB_CLIENT_ACCEPT;
}

static void update_sent(rfbClientPtr cl, int result) {
    (void)result;
    if (cl->clientData) ((ClientStats *)cl->clientData)->updates++;
}

/* Clients that have received everything published so far and asked for the next update. */
static int caught_up(rfbScreenInfoPtr screen, long *bytes_sent) {
    int n = 0;
    long bytes = 0;
    rfbClientIteratorPtr it = rfbGetClientIterator(screen);
    rfbClientPtr cl;
    while ((cl = rfbClientIteratorNext(it))) {
        if (bytes_sent) bytes += rfbStatGetSentBytes(cl);
        ClientStats *st = cl->clientData;
        if (cl->sock == RFB_INVALID_SOCKET || !st || st->updates < 1) continue;
        if (sraRgnEmpty(cl->modifiedRegion) && !sraRgnEmpty(cl->requestedRegion)) n++;
    }
    rfbReleaseClientIterator(it);
    if (bytes_sent) *bytes_sent = bytes;
    return n;
}

/* Write an RGB frame into the 32-bit framebuffer (R, G, B, 0 bytes) and mark changed tiles. */
static void publish(rfbScreenInfoPtr screen, const uint8_t *rgb, int w, int h, int mark_all) {
    uint8_t *fb = (uint8_t *)screen->frameBuffer;
    for (int ty = 0; ty < h; ty += TILE) {
        int th = ty + TILE > h ? h - ty : TILE;
        for (int tx = 0; tx < w; tx += TILE) {
            int tw = tx + TILE > w ? w - tx : TILE;
            int changed = mark_all;
            for (int y = ty; y < ty + th; y++) {
                const uint8_t *src = rgb + ((size_t)y * w + tx) * 3;
                uint8_t *dst = fb + ((size_t)y * w + tx) * 4;
                for (int x = 0; x < tw; x++, src += 3, dst += 4) {
                    if (dst[0] != src[0] || dst[1] != src[1] || dst[2] != src[2]) {
                        dst[0] = src[0];
                        dst[1] = src[1];
                        dst[2] = src[2];
                        changed = 1;
                    }
                }
            }
            if (changed) rfbMarkRectAsModified(screen, tx, ty, tx + tw, ty + th);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: %s PORT WIDTH HEIGHT NFRAMES FRAMEFILE NCLIENTS TIMEOUT_S [FPS]\n", argv[0]);
        return 2;
    }
    double fps = argc == 9 ? atof(argv[8]) : 0.0;
    int64_t period_ns = fps > 0 ? (int64_t)(1e9 / fps) : 0;
    int port = atoi(argv[1]), w = atoi(argv[2]), h = atoi(argv[3]), nframes = atoi(argv[4]);
    const char *path = argv[5];
    int nclients = atoi(argv[6]);
    alarm((unsigned)atoi(argv[7])); /* default SIGALRM action: terminate */

    size_t frame_bytes = (size_t)w * h * 3;
    uint8_t *frames = malloc(frame_bytes * nframes);
    FILE *f = fopen(path, "rb");
    if (!frames || !f || fread(frames, 1, frame_bytes * nframes, f) != frame_bytes * nframes) {
        fprintf(stderr, "lvs_server: cannot read %d frames from %s\n", nframes, path);
        return 1;
    }
    fclose(f);

    rfbLogEnable(0);
    int fake_argc = 1;
    char *fake_argv[] = {argv[0], NULL};
    rfbScreenInfoPtr screen = rfbGetScreen(&fake_argc, fake_argv, w, h, 8, 3, 4);
    if (!screen) return 1;
    screen->frameBuffer = calloc((size_t)w * h, 4);
    screen->desktopName = "libvncserver";
    screen->port = port;
    screen->autoPort = FALSE;
    screen->ipv6port = 0; /* no IPv6 listener */
    screen->listenInterface = htonl(INADDR_LOOPBACK);
    screen->alwaysShared = TRUE;
    screen->deferUpdateTime = 0; /* send as soon as a client asks: no 5 ms batching delay */
    screen->cursor = NULL;       /* do not draw a cursor into the framebuffer */
    screen->newClientHook = new_client;
    screen->displayFinishedHook = update_sent;
    publish(screen, frames, w, h, 1);
    rfbInitServer(screen);
    if (screen->listenSock == RFB_INVALID_SOCKET) {
        fprintf(stderr, "lvs_server: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    printf("READY %d\n", port);
    fflush(stdout);

    while (caught_up(screen, NULL) < nclients) rfbProcessEvents(screen, 100000);
    /* Settle: libvncserver answers the first request with an ExtDesktopSize-only update and then
       the frame, so a second request is still on its way; let it arrive (requests merge). */
    for (int64_t until = now_ns() + SETTLE_NS; now_ns() < until;) rfbProcessEvents(screen, 10000);
    while (caught_up(screen, NULL) < nclients) rfbProcessEvents(screen, 100000);

    int64_t *publish_ns = calloc((size_t)nframes, sizeof(int64_t));
    long bytes0 = 0, bytes1 = 0;
    caught_up(screen, &bytes0);
    double user0, sys0, user1, sys1;
    cpu_seconds(&user0, &sys0);
    long faults0 = minor_faults;
    int64_t wall0 = now_ns();
    for (int k = 1; k < nframes; k++) {
        publish_ns[k] = now_ns();
        publish(screen, frames + frame_bytes * k, w, h, 0);
        /* A zero timeout first: the clients are idle until we send, so select() must not wait. */
        rfbProcessEvents(screen, 0);
        if (period_ns) {
            int64_t next = wall0 + period_ns * k;
            for (int64_t t = now_ns(); t < next; t = now_ns()) rfbProcessEvents(screen, (long)((next - t) / 1000));
        } else {
            while (caught_up(screen, NULL) < nclients) rfbProcessEvents(screen, 100000);
        }
    }
    int64_t wall1 = now_ns();
    cpu_seconds(&user1, &sys1);
    caught_up(screen, &bytes1);

    printf("{\"cpu_s\": %.6f, \"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f, \"wall_s\": %.6f, \"frames\": %d, "
           "\"clients\": %d, \"bytes_sent\": %ld, \"minor_faults\": %ld, \"publish_ns\": [",
           (user1 - user0) + (sys1 - sys0), user1 - user0, sys1 - sys0, (wall1 - wall0) / 1e9, nframes - 1,
           nclients, bytes1 - bytes0, minor_faults - faults0);
    for (int k = 1; k < nframes; k++) printf("%s%lld", k > 1 ? ", " : "", (long long)publish_ns[k]);
    printf("]}\n");
    fflush(stdout);
    rfbShutdownServer(screen, TRUE);
    return 0;
}
