// SPDX-License-Identifier: GPL-2.0
/*
 * uctl: the userspace controller the BPF policies are measured against,
 * written as well as we can: one thread, every cgroup file opened once and
 * read with pread(), woken by a PSI trigger or every PERIOD_MS, whichever
 * comes first. Same control laws as bpf_progs/priority.bpf.c (with
 * idle_ms) and bpf_progs/proactive.bpf.c.
 *
 *   uctl priority CGROUP PROTECT_BYTES IDLE_MS PERIOD_MS
 *	CGROUP counts as active while its memory.stat pgfault count grew
 *	within IDLE_MS; while active its memory.low is PROTECT_BYTES, else 0.
 *   uctl proactive CGROUP PERCENT BATCH_PAGES PERIOD_MS
 *	When CGROUP's memory.current is above PERCENT % of its memory.max,
 *	write the excess (at least BATCH_PAGES pages) to its memory.reclaim.
 *
 * Runs until SIGTERM or SIGINT, then prints one JSON object: wake-ups (by
 * PSI or by the period), control writes and when each was made
 * (CLOCK_MONOTONIC seconds, the first 4096), bytes asked of memory.reclaim,
 * and the CPU time the controller used (its reclaim included:
 * memory.reclaim runs in the writer).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_file(const char *cgroup, const char *name, int flags)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", cgroup, name);
	fd = open(path, flags);
	if (fd < 0) {
		fprintf(stderr, "uctl: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return fd;
}

static unsigned long long read_number(int fd)
{
	char buf[64];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return 0;
	buf[n] = 0;
	if (!strncmp(buf, "max", 3))
		return ~0ULL;
	return strtoull(buf, NULL, 10);
}

/* The value of one key of a flat-keyed file such as memory.stat. */
static unsigned long long read_key(int fd, const char *key)
{
	static char buf[16384];
	size_t len = strlen(key);
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (!strncmp(line, key, len) && line[len] == ' ')
			return strtoull(line + len + 1, NULL, 10);
	}
	return 0;
}

#define MAX_LOGGED 4096
static double write_at[MAX_LOGGED];	/* CLOCK_MONOTONIC time of each control write */
static unsigned long long writes;

static int write_number(int fd, unsigned long long value)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu", value);

	if (writes < MAX_LOGGED)
		write_at[writes] = now();
	writes++;
	return pwrite(fd, buf, n, 0) == n ? 0 : -errno;
}

int main(int argc, char **argv)
{
	unsigned long long wake_psi = 0, wake_period = 0, reclaim_bytes = 0, failed = 0;
	long page = sysconf(_SC_PAGESIZE);
	struct pollfd pfd = { .events = POLLPRI };
	const char *trigger = "some 10000 1000000";	/* 10 ms of stall in 1 s */
	int priority, period_ms;
	struct rusage ru;

	if (argc != 6 || (strcmp(argv[1], "priority") && strcmp(argv[1], "proactive"))) {
		fprintf(stderr, "usage: uctl priority CGROUP PROTECT_BYTES IDLE_MS PERIOD_MS\n"
				"       uctl proactive CGROUP PERCENT BATCH_PAGES PERIOD_MS\n");
		return 2;
	}
	priority = !strcmp(argv[1], "priority");
	period_ms = atoi(argv[5]);
	if (period_ms <= 0) {
		fprintf(stderr, "uctl: PERIOD_MS must be positive\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	pfd.fd = open_file(argv[2], "memory.pressure", O_RDWR | O_NONBLOCK);
	if (write(pfd.fd, trigger, strlen(trigger) + 1) < 0) {
		fprintf(stderr, "uctl: PSI trigger on %s/memory.pressure: %s\n", argv[2], strerror(errno));
		return 1;
	}

	if (priority) {
		unsigned long long protect = strtoull(argv[3], NULL, 10), faults, last_faults = ~0ULL;
		double idle_s = atoi(argv[4]) / 1e3, last_active = -1e9;
		int stat = open_file(argv[2], "memory.stat", O_RDONLY), low = open_file(argv[2], "memory.low", O_WRONLY);
		int protected = -1;

		while (!stop) {
			int ready = poll(&pfd, 1, period_ms);
			double t = now();
			int active;

			if (ready > 0)
				wake_psi++;
			else if (!ready)
				wake_period++;
			faults = read_key(stat, "pgfault");
			if (faults != last_faults)
				last_active = t;
			last_faults = faults;
			active = t - last_active <= idle_s;
			if (active != protected) {
				if (write_number(low, active ? protect : 0))
					failed++;
				protected = active;
			}
		}
	} else {
		unsigned long long percent = strtoull(argv[3], NULL, 10), batch = strtoull(argv[4], NULL, 10) * page;
		int current = open_file(argv[2], "memory.current", O_RDONLY);
		int max = open_file(argv[2], "memory.max", O_RDONLY);
		int reclaim = open_file(argv[2], "memory.reclaim", O_WRONLY);

		while (!stop) {
			int ready = poll(&pfd, 1, period_ms);
			unsigned long long limit = read_number(max), usage = read_number(current), keep, want;

			if (ready > 0)
				wake_psi++;
			else if (!ready)
				wake_period++;
			if (limit == ~0ULL)
				continue;
			keep = limit / 100 * percent;
			if (usage <= keep)
				continue;
			want = usage - keep < batch ? batch : usage - keep;
			/* -EAGAIN: reclaimed less than asked; it still counts. */
			if (write_number(reclaim, want) && errno != EAGAIN)
				failed++;
			reclaim_bytes += want;
		}
	}

	getrusage(RUSAGE_SELF, &ru);
	printf("{\"wakeups_psi\": %llu, \"wakeups_period\": %llu, \"writes\": %llu, \"failed_writes\": %llu, "
	       "\"reclaim_bytes_asked\": %llu, \"cpu_user_us\": %ld, \"cpu_system_us\": %ld, \"write_at\": [",
	       wake_psi, wake_period, writes, failed, reclaim_bytes,
	       ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec, ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec);
	for (unsigned long long i = 0; i < writes && i < MAX_LOGGED; i++)
		printf("%s%.4f", i ? ", " : "", write_at[i]);
	printf("]}\n");
	return 0;
}
