export * from './context';
export * from './database';
export * from './packages';
export * from './processes';
export * from './apps';
export * from './redis-cluster';
export * from './postgres-server';
