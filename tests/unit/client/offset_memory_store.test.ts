import { OffsetMemoryStore } from "../../../lib/client/offset_memory_store.ts";
import { describeOffsetStore } from "../../support/offset_store_suite.ts";

describeOffsetStore("client, memory", { open: () => Promise.resolve(new OffsetMemoryStore()) });
