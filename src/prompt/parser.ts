/**
 * The A1111 prompt syntax in one import: attention weights, prompt editing and alternation
 * schedules, AND (composable diffusion) and extra-network tags. Each lives in its own module.
 */
export { parsePromptAttention, PromptSyntaxError, type PromptFragment } from './attention.js';
export { getLearnedConditioningPromptSchedules, getPromptSchedule, type ScheduleEntry } from './schedules.js';
export { getMulticondPromptList, splitSubpromptWeight, type MulticondPromptList } from './multicond.js';
export {
  groupExtraNetworks,
  parseExtraNetworkPrompts,
  parseExtraNetworks,
  type ExtraNetworkParams,
  type ParsedExtraNetworks,
} from './extra-networks.js';
