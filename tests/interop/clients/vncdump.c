/* vncdump: a minimal libvncclient client for pdum.rfb's interop tests.
 *
 * usage: vncdump HOST PORT ENCODINGS BPP OUTFILE [PASSWORD [QUALITY]]
 *   ENCODINGS  libvncclient encoding list, e.g. "raw" or "zlib" (only these are requested)
 *   BPP        32 (rgb888), 16 (RGB565) or 8 (BGR233)
 *   PASSWORD   VncAuth password ("" for none)
 *   QUALITY    0-9: enable JPEG and send this quality level with "tight" (default: lossless)
 * After every complete FramebufferUpdate the client writes OUTFILE atomically:
 *   a text header "W H BPP UPDATES\n" followed by the raw framebuffer in the client pixel format.
 * It runs until the server closes the connection (exit 0) or an error occurs (exit 1).
 */
#include <rfb/rfbclient.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *outfile;
static const char *password;
static int updates;

static void dump(rfbClient *client) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", outfile);
    FILE *f = fopen(tmp, "wb");
    if (!f) { perror("fopen"); exit(1); }
    int bpp = client->format.bitsPerPixel;
    updates++;
    fprintf(f, "%d %d %d %d\n", client->width, client->height, bpp, updates);
    fwrite(client->frameBuffer, 1, (size_t)client->width * client->height * (bpp / 8), f);
    fclose(f);
    rename(tmp, outfile);
}

static void finished(rfbClient *client) { dump(client); }

static char *get_password(rfbClient *client) { (void)client; return strdup(password ? password : ""); }

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST PORT ENCODINGS BPP OUTFILE [PASSWORD [QUALITY]]\n", argv[0]);
        return 2;
    }
    int bpp = atoi(argv[4]);
    outfile = argv[5];
    password = argc > 6 ? argv[6] : NULL;
    rfbClient *client = rfbGetClient(8, 3, 4);
    if (bpp == 16) {
        client->format.bitsPerPixel = 16; client->format.depth = 16;
        client->format.redMax = 31; client->format.greenMax = 63; client->format.blueMax = 31;
        client->format.redShift = 11; client->format.greenShift = 5; client->format.blueShift = 0;
    } else if (bpp == 8) {
        client->format.bitsPerPixel = 8; client->format.depth = 8;
        client->format.redMax = 7; client->format.greenMax = 7; client->format.blueMax = 3;
        client->format.redShift = 0; client->format.greenShift = 3; client->format.blueShift = 6;
    }
    client->serverHost = strdup(argv[1]);
    client->serverPort = atoi(argv[2]);
    client->appData.encodingsString = argv[3];
    client->appData.compressLevel = 6;
    client->appData.enableJPEG = FALSE;
    if (argc > 7) {
        client->appData.enableJPEG = TRUE;
        client->appData.qualityLevel = atoi(argv[7]);
    }
    client->FinishedFrameBufferUpdate = finished;
    client->GetPassword = get_password;
    if (!rfbInitClient(client, NULL, NULL)) return 1;  /* frees client on failure */
    for (;;) {
        int n = WaitForMessage(client, 100000);
        if (n < 0) break;
        if (n > 0 && !HandleRFBServerMessage(client)) break;
    }
    rfbClientCleanup(client);
    return 0;
}
