/** The shape of infra.yml, as the JSON Schema in schema/infra.schema.json describes it. */

export type AiAccessPolicy = 'exclusive' | 'open';
export type GpuPolicy = 'exclusive' | 'shared';
export type FirewallMode = 'host' | 'vm';
export type MachineType = 'lxc' | 'vm';
export type Protocol = 'tcp' | 'udp';

export interface GlobalSettings {
  base_subnet: string;
  default_os_image?: string;
  default_connection?: string;
  default_user?: string;
  gpu_policy?: GpuPolicy;
  firewall_mode?: FirewallMode;
  ai_access_policy?: AiAccessPolicy;
  ai_access_default?: string;
  ai_services?: string[];
  ai_vram_scrub_command?: string[];
  cluster?: Cluster;
}

/** An Incus cluster member: its address on the member link, and its link's name where it differs. */
export interface ClusterMember {
  address: string;
  member_link?: string;
}

/** global.cluster: the members and the link that joins them (docs/multi-host.md). */
export interface Cluster {
  member_link: string;
  members: Record<string, ClusterMember>;
}

export type Mapping = Record<string, unknown>;

export interface Machine {
  description?: string;
  type?: MachineType;
  ip?: string;
  gpu?: boolean;
  ephemeral?: boolean;
  os_image?: string;
  profiles?: string[];
  config?: Mapping;
  devices?: Mapping;
  storage_volumes?: Mapping;
  roles?: string[];
  /** Cluster only: the member it runs on; enrichment fills it from the domain's. */
  member?: string;
}

export interface Profile {
  config?: Mapping;
  devices?: Record<string, Mapping>;
}

export interface Domain {
  description?: string;
  subnet_id: number;
  ephemeral?: boolean;
  profiles?: Record<string, Profile>;
  machines?: Record<string, Machine>;
  /** Cluster only: the member of the machines that name none. */
  member?: string;
}

export interface NetworkPolicy {
  description?: string;
  from: string;
  to: string;
  ports?: number[] | 'all';
  protocol?: Protocol;
  bidirectional?: boolean;
}

export interface Infra {
  project_name: string;
  global: GlobalSettings;
  domains: Record<string, Domain>;
  network_policies?: NetworkPolicy[] | null;
}

/** Where a node came from, for messages a user can act on. */
export interface Location {
  file: string;
  line?: number;
  column?: number;
}

export interface Diagnostic extends Partial<Location> {
  message: string;
  /** JSON-pointer-like path into the merged model, e.g. /domains/pro/subnet_id */
  path?: string;
}

export interface Context {
  vmNested?: boolean;
  yolo: boolean;
}
