class PickPlaceCanExpert: pass
