import { getContainerRuntimeClient, type StartedTestContainer } from 'testcontainers';

// Direct Docker operations the fault tests need and testcontainers does not offer
// (stop and start the same container, SIGKILL, network connect/disconnect).

export async function docker() {
  return (await getContainerRuntimeClient()).container.dockerode;
}

export async function killContainer(container: StartedTestContainer): Promise<void> {
  await (await docker()).getContainer(container.getId()).kill({ signal: 'SIGKILL' });
}

/** Stops (SIGTERM) and later starts the same container: its volumes, and so Redis's AOF, stay. */
export async function stopContainer(container: StartedTestContainer): Promise<void> {
  await (await docker()).getContainer(container.getId()).stop({ t: 10 });
}

export async function startContainer(container: StartedTestContainer): Promise<void> {
  await (await docker()).getContainer(container.getId()).start();
}

/** The host port mapped to `port` now (it may change when a container is restarted). */
export async function mappedPort(container: StartedTestContainer, port: number): Promise<number> {
  const info = await (await docker()).getContainer(container.getId()).inspect();
  const binding = info.NetworkSettings.Ports[`${port}/tcp`]?.[0];
  if (!binding) throw new Error(`port ${port} is not published`);
  return Number(binding.HostPort);
}

export async function disconnect(container: StartedTestContainer, networkName: string): Promise<void> {
  await (await docker()).getNetwork(networkName).disconnect({ Container: container.getId(), Force: true });
}

export async function connectNetwork(container: StartedTestContainer, networkName: string, aliases: string[]): Promise<void> {
  await (await docker()).getNetwork(networkName).connect({ Container: container.getId(), EndpointConfig: { Aliases: aliases } });
}

/** Everything a container has logged so far, stdout and stderr. */
export async function containerLogs(container: StartedTestContainer): Promise<string> {
  const raw = (await (await docker()).getContainer(container.getId()).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
  // Without a TTY, Docker frames each chunk: 1 byte stream, 3 zero bytes, 4 bytes length.
  const parts: Buffer[] = [];
  for (let offset = 0; offset + 8 <= raw.length; ) {
    const length = raw.readUInt32BE(offset + 4);
    parts.push(raw.subarray(offset + 8, offset + 8 + length));
    offset += 8 + length;
  }
  return Buffer.concat(parts).toString('utf8');
}

/** Freezes every process of a container (SIGSTOP-like, cgroup freezer): a node that cannot act. */
export async function pauseContainer(container: StartedTestContainer): Promise<void> {
  await (await docker()).getContainer(container.getId()).pause();
}

export async function unpauseContainer(container: StartedTestContainer): Promise<void> {
  await (await docker()).getContainer(container.getId()).unpause();
}
