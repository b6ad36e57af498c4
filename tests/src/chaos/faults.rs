//! The faults the soak injects, at moments its seed picks: a process killed
//! (SIGKILL) and started again, a dependency's connections cut, the
//! provider stalled past the provisioning timeout, the signing key rotated.

use std::time::{Duration, Instant};

use offers::roles::Role;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::TestSuite;
use crate::faults::FaultProxy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    KillWorker,
    KillActivation,
    KillAccount,
    CutPostgres,
    CutRedis,
    CutRabbitMq,
    StallProvider,
    RotateKey,
    KillAuth,
    KillScheduler,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::KillWorker,
        Fault::KillActivation,
        Fault::KillAccount,
        Fault::CutPostgres,
        Fault::CutRedis,
        Fault::CutRabbitMq,
        Fault::StallProvider,
        Fault::RotateKey,
        Fault::KillAuth,
        Fault::KillScheduler,
    ];

    /// How `CHAOS_FAULTS` names it.
    pub fn short(self) -> &'static str {
        match self {
            Fault::KillWorker => "kill-worker",
            Fault::KillActivation => "kill-activation",
            Fault::KillAccount => "kill-account",
            Fault::CutPostgres => "cut-postgres",
            Fault::CutRedis => "cut-redis",
            Fault::CutRabbitMq => "cut-rabbitmq",
            Fault::StallProvider => "stall-provider",
            Fault::RotateKey => "rotate-key",
            Fault::KillAuth => "kill-auth",
            Fault::KillScheduler => "kill-scheduler",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillWorker => "kill -9 a worker",
            Fault::KillActivation => "kill -9 an activation process",
            Fault::KillAccount => "kill -9 an account process",
            Fault::CutPostgres => "cut PostgreSQL",
            Fault::CutRedis => "cut Redis",
            Fault::CutRabbitMq => "cut RabbitMQ",
            Fault::StallProvider => "stall the provider",
            Fault::RotateKey => "rotate the signing key",
            Fault::KillAuth => "kill -9 the auth process",
            Fault::KillScheduler => "kill -9 the scheduler (mid renewal pass)",
        }
    }
}

/// When a fault held, from its start until what it broke was back.
#[derive(Debug, Clone)]
pub struct Window {
    pub fault: Fault,
    pub from: Instant,
    pub to: Instant,
}

/// What the faults act on.
pub struct Targets {
    pub postgres: FaultProxy,
    pub redis: FaultProxy,
    pub rabbitmq: FaultProxy,
    pub provider: FaultProxy,
}

/// Injects faults of `kinds` until `until`: each kind once first (in an
/// order the seed picks), then kinds at random, each after a pause of 1 to
/// 4 s.
pub async fn inject(
    suite: &mut TestSuite,
    targets: &Targets,
    kinds: &[Fault],
    rng: &mut StdRng,
    until: Instant,
) -> Vec<Window> {
    let mut order = kinds.to_vec();
    order.shuffle(rng);
    let mut windows = Vec::new();
    let mut next = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..4_000))).await;
        if Instant::now() >= until {
            return windows;
        }
        let fault = order.get(next).copied().unwrap_or_else(|| kinds[rng.random_range(0..kinds.len())]);
        next += 1;
        let from = Instant::now();
        let hold = Duration::from_millis(rng.random_range(2_000..4_000));
        match fault {
            Fault::KillWorker => kill(suite, Role::Worker, rng).await,
            Fault::KillActivation => kill(suite, Role::Activation, rng).await,
            Fault::KillAccount => kill(suite, Role::Account, rng).await,
            Fault::CutPostgres => hold_then_restore(&targets.postgres, FaultProxy::cut, hold).await,
            Fault::CutRedis => hold_then_restore(&targets.redis, FaultProxy::cut, hold).await,
            Fault::CutRabbitMq => hold_then_restore(&targets.rabbitmq, FaultProxy::cut, hold).await,
            // Longer than the provisioning timeout: calls in flight time out.
            Fault::StallProvider => hold_then_restore(&targets.provider, FaultProxy::stall, hold).await,
            Fault::KillAuth => kill(suite, Role::Auth, rng).await,
            Fault::KillScheduler => kill(suite, Role::Scheduler, rng).await,
            // Nothing may fail because of it, so it has no window to excuse answers in.
            Fault::RotateKey => {
                suite.admin().rotate_key().await.expect("rotated");
            }
        }
        windows.push(Window { fault, from, to: Instant::now() });
    }
}

async fn hold_then_restore(proxy: &FaultProxy, fault: fn(&FaultProxy), hold: Duration) {
    fault(proxy);
    tokio::time::sleep(hold).await;
    proxy.restore();
}

/// SIGKILL to one replica of `role`, started again at once (as a
/// supervisor would) and waited for until ready.
async fn kill(suite: &mut TestSuite, role: Role, rng: &mut StdRng) {
    let deployment = suite.deployment();
    let replicas: Vec<_> = deployment.members_of(role).cloned().collect();
    let member = replicas[rng.random_range(0..replicas.len())].clone();
    deployment.kill(&member).expect("killed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    deployment.restart(&member, Duration::from_secs(90)).await.expect("started again");
}
