/* floor_server: the scaling sections' floor in C, next to the asyncio one (floor_server.py).
 *
 * usage: floor_server PORT NCLIENTS NFRAMES UPDATE_BYTES TIMEOUT_S [FPS]
 *
 * The same protocol, schedule and output as pdum/rfb/bench/floor_server.py, with no interpreter
 * and no event loop library: accept NCLIENTS floor clients (benchmarks/peer/floor_client.c) on
 * 127.0.0.1:PORT; once every client has sent something since the last frame, write UPDATE_BYTES
 * bytes to each of them, NFRAMES times (lock-step). With FPS the writes go out on a clock
 * instead, frame k at start + k / FPS, each followed by its whole period, and the requests are
 * read and ignored. One epoll loop, one read per readable client, one write call per client and
 * frame (blocking sockets: a write the kernel cannot take at once sleeps, it does not spin).
 *
 * What it shows: what one more client costs on this machine when nothing but the kernel's
 * loopback send and receive and one wake-up stand between a server and its clients. Whatever a
 * server is written in, one more client costs it at least this, so a frame cheaper than
 * (NCLIENTS - 1) times this cost per extra client cannot meet a "NCLIENTS clients cost less
 * than 2x one" target (docs/performance.md, "Many clients").
 *
 * alarm() kills it after TIMEOUT_S whatever happens. On success it prints one JSON line, the
 * asyncio floor's: {"cpu_s", "cpu_user_s", "cpu_sys_s", "wall_s", "minor_faults", "frames",
 * "clients"}, getrusage(RUSAGE_SELF) from the moment every client has asked once to the end.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 256

typedef struct {
    double user, sys, wall;
    long faults;
} Usage;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static Usage usage_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    Usage u = {(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, now_s(), ru.ru_minflt};
    return u;
}

/* Write all of buf to fd (a blocking socket); 0 on success. */
static int write_all(int fd, const char *buf, size_t size) {
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, buf + off, size - off);
        if (n <= 0) return -1;
        off += (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: floor_server PORT NCLIENTS NFRAMES UPDATE_BYTES TIMEOUT_S [FPS]\n");
        return 2;
    }
    int port = atoi(argv[1]), nclients = atoi(argv[2]), nframes = atoi(argv[3]);
    long size = atol(argv[4]);
    double fps = argc == 7 ? atof(argv[6]) : 0.0;
    alarm((unsigned)atoi(argv[5])); /* default SIGALRM action: terminate */
    if (nclients < 1 || nclients > MAX_CLIENTS || nframes < 1 || size < 1) {
        fprintf(stderr, "floor_server: NCLIENTS must be 1..%d, NFRAMES and UPDATE_BYTES positive\n", MAX_CLIENTS);
        return 2;
    }

    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 64) != 0) {
        perror("floor_server: listen");
        return 1;
    }
    printf("READY %d\n", port);
    fflush(stdout);

    int fds[MAX_CLIENTS], asked[MAX_CLIENTS] = {0}, epoll = epoll_create1(0);
    for (int i = 0; i < nclients; i++) {
        fds[i] = accept(listener, NULL, NULL);
        if (fds[i] < 0) {
            perror("floor_server: accept");
            return 1;
        }
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as asyncio does */
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        epoll_ctl(epoll, EPOLL_CTL_ADD, fds[i], &ev);
    }
    close(listener);

    char *update = malloc((size_t)size);
    if (update == NULL) return 1;
    volatile char *touch = update; /* zeros, as the asyncio floor's bytes(size), written one by one */
    for (long k = 0; k < size; k++) touch[k] = 0; /* so the pages fault in now, not during the run */
    char buf[4096];
    struct epoll_event events[MAX_CLIENTS];
    int nasked = 0, sent = 0, started = 0;
    double next = 0.0; /* paced: when the next write (or, after the last, the end) is due */
    Usage start = {0};
    for (;;) {
        int timeout = -1;
        if (fps > 0 && started) {
            double wait = next - now_s();
            timeout = wait > 0 ? (int)(wait * 1000.0) + 1 : 0;
        }
        int ready = epoll_wait(epoll, events, MAX_CLIENTS, timeout);
        for (int j = 0; j < ready; j++) {
            int i = (int)events[j].data.u32;
            ssize_t n = read(fds[i], buf, sizeof buf);
            if (n <= 0) {
                if (sent < nframes) {
                    fprintf(stderr, "floor_server: a client left before the last frame\n");
                    return 1;
                }
                epoll_ctl(epoll, EPOLL_CTL_DEL, fds[i], NULL); /* done: it asked for more, then closed */
            }
            if (!asked[i]) {
                asked[i] = 1;
                nasked++;
            }
        }
        int due = 0;
        if (!started && nasked == nclients) { /* everyone connected and asked: the run starts */
            started = 1;
            start = usage_now();
            next = start.wall;
        }
        if (started && fps > 0) {
            if (now_s() < next) continue;
            if (sent == nframes) break; /* the last write's period is over */
            due = 1;
            next += 1.0 / fps;
        } else if (started && nasked == nclients) {
            if (sent == nframes) break;
            due = 1;
            memset(asked, 0, sizeof asked);
            nasked = 0;
        }
        if (!due) continue;
        sent++;
        for (int i = 0; i < nclients; i++) {
            if (write_all(fds[i], update, (size_t)size) != 0) {
                perror("floor_server: write");
                return 1;
            }
        }
    }
    Usage end = usage_now();
    printf("{\"cpu_s\": %.6f, \"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f, \"wall_s\": %.6f, "
           "\"minor_faults\": %ld, \"frames\": %d, \"clients\": %d}\n",
           (end.user - start.user) + (end.sys - start.sys), end.user - start.user, end.sys - start.sys,
           end.wall - start.wall, end.faults - start.faults, nframes, nclients);
    for (int i = 0; i < nclients; i++) close(fds[i]);
    free(update);
    return 0;
}
