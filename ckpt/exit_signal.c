/* Signal flag for --exit-signal-handler; see exit_signal.h. */
#include "ckpt/exit_signal.h"

#include <signal.h>
#include <string.h>

/* A signal handler can reach nothing but process-wide state: this flag is the one exception to
 * "no global mutable state", written only by the handler. */
static volatile sig_atomic_t received_signal;

static void on_signal(int sig) { received_signal = sig; }

void exit_signal_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* reads and writes in progress go on; the loop checks the flag */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

bool exit_signal_received(void) { return received_signal != 0; }

const char *exit_signal_name(void)
{
    return received_signal == SIGTERM ? "SIGTERM" : received_signal == SIGINT ? "SIGINT" : NULL;
}
