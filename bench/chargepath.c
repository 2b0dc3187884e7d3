// SPDX-License-Identifier: GPL-2.0
/*
 * chargepath: the cost of one kind of memory-cgroup charge, per unit.
 *
 *   chargepath anon  MB    ROUNDS [BALLOON_MB]   anonymous page faults (user folios)
 *   chargepath shmem MB    ROUNDS [BALLOON_MB]   write(2) into a tmpfs file (shmem folios)
 *   chargepath kmem  FILES ROUNDS [BALLOON_MB]   create and unlink empty tmpfs files
 *                                                (accounted slab: inodes, dentries)
 *
 * anon maps MB of anonymous memory (4 KiB pages, no THP), writes one byte per
 * page and unmaps it. shmem writes MB into a new file under /tmp 4 KiB at a
 * time, then unlinks it. kmem creates FILES empty files in a new directory
 * under /tmp, then unlinks them and the directory. Before each round, and
 * outside the timing, BALLOON_MB of anonymous memory is touched and then
 * marked cold (MADV_COLD moves it to the inactive list), so that a cgroup
 * limit below balloon + round makes the measured charges hit it and reclaim
 * the balloon to swap. Without MADV_COLD the just-touched balloon sits on the
 * active list, and in a 16 MiB cgroup a third of kmem runs ended in the OOM
 * killer (reclaim kept finding referenced pages and gave up).
 *
 * Prints one JSON object: the nanoseconds per unit (page or file) of every
 * round (CLOCK_MONOTONIC; under QEMU -icount shift=0 that is one nanosecond
 * per guest instruction, so the numbers repeat).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void touch(char *p, size_t bytes)
{
	for (size_t off = 0; off < bytes; off += PAGE)
		p[off] = (char)(off / PAGE) | 1;
}

static void anon(size_t bytes)
{
	char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("chargepath: mmap");
	madvise(p, bytes, MADV_NOHUGEPAGE);
	touch(p, bytes);
	munmap(p, bytes);
}

static void shmem(size_t bytes)
{
	static char buf[PAGE];
	const char *path = "/tmp/chargepath.shmem";
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

	if (fd < 0)
		die("chargepath: open");
	memset(buf, 1, sizeof(buf));
	for (size_t off = 0; off < bytes; off += PAGE)
		if (write(fd, buf, PAGE) != PAGE)
			die("chargepath: write");
	close(fd);
	unlink(path);
}

#define KMEM_DIR "/tmp/chargepath.kmem"

/*
 * A run killed mid-round (the OOM killer, in a pressure regime) leaves its
 * files behind; the next run starts by removing them, outside the timing.
 */
static void remove_leftovers(void)
{
	char path[sizeof(KMEM_DIR) + 1 + NAME_MAX + 1];
	struct dirent *entry;
	DIR *d = opendir(KMEM_DIR);

	if (!d) {
		if (errno != ENOENT)
			die("chargepath: opendir");
		return;
	}
	while ((entry = readdir(d))) {
		if (entry->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", KMEM_DIR, entry->d_name);
		if (unlink(path))
			die("chargepath: unlink leftover");
	}
	closedir(d);
	if (rmdir(KMEM_DIR))
		die("chargepath: rmdir leftover");
}

static void kmem(size_t files)
{
	const char *dir = KMEM_DIR;
	char path[64];

	if (mkdir(dir, 0700))
		die("chargepath: mkdir");
	for (size_t i = 0; i < files; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/%zu", dir, i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
		if (fd < 0)
			die("chargepath: create");
		close(fd);
	}
	for (size_t i = 0; i < files; i++) {
		snprintf(path, sizeof(path), "%s/%zu", dir, i);
		if (unlink(path))
			die("chargepath: unlink");
	}
	rmdir(dir);
}

int main(int argc, char **argv)
{
	size_t size, units, balloon_bytes = 0;
	char *balloon = NULL;
	const char *mode;
	int rounds;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: chargepath anon|shmem MB ROUNDS [BALLOON_MB]\n"
				"       chargepath kmem FILES ROUNDS [BALLOON_MB]\n");
		return 2;
	}
	mode = argv[1];
	size = strtoul(argv[2], NULL, 10);
	rounds = atoi(argv[3]);
	if (argc == 5)
		balloon_bytes = strtoul(argv[4], NULL, 10) << 20;
	if (strcmp(mode, "anon") && strcmp(mode, "shmem") && strcmp(mode, "kmem")) {
		fprintf(stderr, "chargepath: unknown mode %s\n", mode);
		return 2;
	}
	units = strcmp(mode, "kmem") ? (size << 20) / PAGE : size;
	if (!strcmp(mode, "kmem"))
		remove_leftovers();
	if (balloon_bytes) {
		balloon = mmap(NULL, balloon_bytes, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (balloon == MAP_FAILED)
			die("chargepath: mmap balloon");
		madvise(balloon, balloon_bytes, MADV_NOHUGEPAGE);
	}
	printf("{\"mode\": \"%s\", \"units\": %zu, \"ns_per_unit\": [", mode, units);
	for (int r = 0; r < rounds; r++) {
		long long start;

		if (balloon) {
			touch(balloon, balloon_bytes);
			if (madvise(balloon, balloon_bytes, MADV_COLD))
				die("chargepath: madvise(MADV_COLD)");
		}
		start = now_ns();
		if (!strcmp(mode, "anon"))
			anon(size << 20);
		else if (!strcmp(mode, "shmem"))
			shmem(size << 20);
		else
			kmem(size);
		printf("%s%.3f", r ? ", " : "", (double)(now_ns() - start) / units);
		fflush(stdout);
	}
	printf("]}\n");
	return 0;
}
