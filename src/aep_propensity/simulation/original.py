"""What Adobe's original simulator produced: the fidelity reference of the ``cmle`` mode.

Event counts of the original notebook's saved run, per 100,000 people:
1,064,218 events in all, 14,827 people converting (14.83%).
"""

ORIGINAL_EVENTS = 1_064_218
ORIGINAL_CONVERTING_SHARE = 0.1483
ORIGINAL_EVENT_COUNTS = {
    "directMarketing.emailSent": 500_694,
    "directMarketing.emailOpened": 197_690,
    "web.webpagedetails.pageViews": 100_165,
    "advertising.impressions": 100_004,
    "directMarketing.emailClicked": 42_967,
    "commerce.productViews": 31_659,
    "web.webinteraction.linkClicks": 31_332,
    "decisioning.propositionDisplay": 31_194,
    "web.formFilledOut": 14_827,
    "advertising.clicks": 6_354,
    "commerce.purchases": 2_484,
    "decisioning.propositionDismiss": 2_475,
    "decisioning.propositionInteract": 2_373,
}
