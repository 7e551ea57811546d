from fusion_datasets.labels import audioset_labels


def test_audioset_labels_are_the_527_classes_in_order():
    labels = audioset_labels()
    assert [label.index for label in labels] == list(range(527))
    assert labels[0].display_name == "Speech"
    assert labels[137].display_name == "Music"
    assert labels[109].display_name == "Roaring cats (lions, tigers)"
    assert len({label.mid for label in labels}) == 527
